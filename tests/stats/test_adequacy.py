"""lmbench.stats.adequacy on known inputs: tuning plateaus, convergence, and the power of paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbench.stats.adequacy import (
    ablation_verdicts,
    compare_verdicts,
    min_detectable_difference,
    paired_power,
    power_row,
    power_text,
    seeds_needed,
    training_verdict,
    tuning_verdict,
)


def test_a_search_that_levelled_off():
    v = tuning_verdict([3.0, 2.9, 2.8, 2.79, 2.795, 2.80])  # last third: 2.795, 2.80 - no better than 2.79
    assert v.levelled is True and v.add == 0 and v.window == 2 and v.improvement == 0.0


def test_a_search_still_improving_says_how_many_trials_to_add():
    v = tuning_verdict([3.0, 2.9, 2.8, 2.7, 2.6, 2.5])
    assert v.levelled is False and v.improvement == pytest.approx((2.7 - 2.5) / 2.5)
    # the best came at trial 6: with 9 trials the last third (3) would follow it
    assert v.add == 3
    # an improvement within the threshold does not count
    assert tuning_verdict([3.0, 2.9, 2.8, 2.7, 2.6999, 2.6998]).levelled is True


def test_pruned_and_failed_trials_count_as_trials_but_give_no_value():
    v = tuning_verdict([3.0, None, 2.8, float("nan"), 2.7, None])
    assert v.trials == 6 and v.completed == 3 and v.levelled is False  # 2.7 came in the last third
    assert tuning_verdict([3.0, None, None]).levelled is None  # too few completed trials


def test_training_converged_or_still_improving():
    flat = [(50, 3.0), (100, 2.9), (150, 2.89), (200, 2.889)]  # last 20% (steps > 160): -0.03%
    steep = [(50, 3.0), (100, 2.9), (150, 2.8), (200, 2.6)]  # -7.7% in the last 20%
    assert training_verdict([flat, flat]).still_improving is False
    v = training_verdict([flat, steep])
    assert v.still_improving is True and v.judged == 2
    assert v.improvement == pytest.approx(np.mean([(2.89 - 2.889) / 2.889, (2.8 - 2.6) / 2.6]))
    assert training_verdict([[(200, 2.5)]]).still_improving is None  # a single evaluation: no verdict


@pytest.mark.parametrize(("effect", "seeds"), [(0.5, 34), (1.0, 10), (0.8, 15)])
def test_seeds_needed_matches_power_tables(effect, seeds):
    """One-sample (paired) t-test, two-sided alpha 0.05, 80% power: dz 0.5 -> 34, 1.0 -> 10, 0.8 -> 15
    (Cohen 1988; G*Power gives the same)."""
    assert seeds_needed(effect, 1.0) == seeds
    assert paired_power(effect, 1.0, seeds) >= 0.8 > paired_power(effect, 1.0, seeds - 1)


def test_min_detectable_difference_is_where_the_power_is_80_percent():
    for seeds in (2, 3, 5, 10):
        d = min_detectable_difference(0.05, seeds)
        assert paired_power(d, 0.05, seeds) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_difference(0.05, 5) == pytest.approx(1.68 * 0.05, rel=0.01)  # dz 1.68 at n = 5
    assert math.isnan(min_detectable_difference(0.05, 1)) and min_detectable_difference(0.0, 3) == 0.0


def test_power_against_a_simulation():
    rng = np.random.default_rng(0)
    from scipy import stats

    diffs = rng.normal(0.05, 0.05, size=(20_000, 5))
    hits = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05
    assert paired_power(0.05, 0.05, 5) == pytest.approx(hits.mean(), abs=0.01)


def test_power_in_words():
    rows = [power_row("lstm", [0.01, 0.03, -0.01], p=0.4), power_row("rnn", [0.2, 0.25, 0.22], p=0.001)]
    lines = power_text(rows, "gru")
    assert len(lines) == 1 and "with 3 seeds" in lines[0] and "lstm 0.0653" in lines[0]
    quiet = power_text(rows[:1], "gru")
    assert "nothing differs significantly from gru" in quiet[1] and "about 34 seeds" in quiet[1]
    assert "no paired test" in power_text([power_row("x", [0.1], p=math.nan)], "gru")[0]


def test_whole_comparison_and_ablation():
    per_seed = {"gru": {0: 2.9, 1: 2.95, 2: 2.92}, "lstm": {0: 3.0, 1: 3.1, 2: 3.02}}
    out = compare_verdicts({"gru": [3, 2.9, 2.95], "lstm": [3.2, 3.0, 2.5]},
                           {"gru": [[(50, 3.0), (100, 2.99)]], "lstm": [[(50, 3.5), (100, 3.0)]]},
                           per_seed, "gru", {"lstm": 0.03})
    assert out["still_improving"] == {"gru": False, "lstm": True}
    assert out["tuning"]["lstm"]["levelled"] is False and out["tuning"]["gru"]["levelled"] is True
    assert out["power"][0]["name"] == "lstm" and out["power"][0]["mean_diff"] == pytest.approx(0.35 / 3)
    assert any(line.startswith("training: lstm: still improving") for line in out["lines"])
    abl = ablation_verdicts({"baseline": per_seed["gru"], "dropout=0.3": per_seed["lstm"]}, "baseline",
                            {"dropout=0.3": 0.5})
    assert "nothing differs significantly from baseline" in abl["lines"][1]


def test_the_report_computes_the_same_verdicts_from_its_frames():
    """report.adequacy feeds the same functions from a report section's frames."""
    from types import SimpleNamespace

    import pandas as pd

    from lmbench.report.adequacy import annotate
    from lmbench.stats import ablation_table, compare_table

    runs = pd.DataFrame({"group": ["gru"] * 3 + ["lstm"] * 3, "model": ["gru"] * 3 + ["lstm"] * 3,
                         "seed": [0, 1, 2] * 2, "test_loss": [2.9, 2.95, 2.92, 3.0, 3.1, 3.02]})
    curves = pd.DataFrame({"group": ["gru", "gru", "lstm", "lstm"], "seed": [0, 0, 0, 0], "step": [50, 100, 50, 100],
                           "val_loss": [3.0, 2.99, 3.5, 3.0]})
    trials = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "PRUNED", "COMPLETE"], "value": [3.0, 3.1, 2.9]})
    sec = SimpleNamespace(kind="compare", runs=runs, curves=curves, facts={},
                          table=compare_table(runs.drop(columns=["group"]), metric="test_loss"),
                          studies=[SimpleNamespace(model="gru", trials=trials)])
    annotate(sec)
    assert list(sec.table["still_improving"]) == [False, True]  # gru first (the best), lstm still improving
    assert "lstm: still improving" in sec.facts["convergence"] and "with 3 seeds" in sec.facts["power of the seeds"]
    assert "gru: too few completed trials" in sec.facts["search adequacy"]

    abl = runs.assign(param="dropout", value=["0.1"] * 3 + ["0.3"] * 3,
                      group=["baseline"] * 3 + ["dropout=0.3"] * 3)
    sec = SimpleNamespace(kind="ablate", runs=abl, curves=pd.DataFrame(), facts={}, studies=[],
                          table=ablation_table(abl.drop(columns=["group", "model"]), {"dropout": "0.1"}))
    annotate(sec)
    assert "dropout=0.3" in sec.facts["power of the seeds"]
