"""Statistics golden tests: t CIs, paired tests and tables checked against independent computations."""

import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table
from scipy import stats as st

from lmbench.stats import (
    CONFIDENCE,
    ablation_table,
    compare_table,
    format_mean_ci,
    format_p,
    mean_ci,
    paired_test,
    render_table,
)

T_975_3 = 3.182446305284263  # t_{0.975, 3} from tables
T_975_2 = 4.302652729911275  # t_{0.975, 2}


def render_text(table: Table) -> str:
    console = Console(width=300, record=True, color_system=None)
    console.print(table)
    return console.export_text()


# ------------------------------------------------------------------ mean_ci


def test_confidence_default():
    assert CONFIDENCE == 0.95


def test_mean_ci_by_hand():
    mean, half = mean_ci([1, 2, 3, 4])
    s = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # sample std, ddof=1
    assert mean == pytest.approx(2.5)
    assert half == pytest.approx(T_975_3 * s / 2, rel=1e-12)


def test_mean_ci_other_confidence_and_series():
    x = pd.Series([4.0, 4.2, 4.1])
    mean, half = mean_ci(x, confidence=0.9)
    assert mean == pytest.approx(4.1)
    assert half == pytest.approx(2.919985580355516 * np.std(x, ddof=1) / math.sqrt(3))  # t_{0.95,2}
    assert mean_ci([1.0, 1.0, 1.0]) == (1.0, 0.0)


def test_mean_ci_small_n_and_nonfinite():
    mean, half = mean_ci([3.5])
    assert mean == 3.5 and math.isnan(half)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert all(math.isnan(v) for v in mean_ci([1.0, float("nan"), 2.0]))  # not silently dropped
    assert all(math.isnan(v) for v in mean_ci([1.0, float("inf")]))
    with pytest.raises(ValueError):
        mean_ci([1, 2], confidence=1.5)


# ------------------------------------------------------------------ paired_test


def test_paired_test_by_hand_and_scipy():
    a = [4.10, 4.25, 4.05, 4.30]
    b = [4.00, 4.20, 3.90, 4.22]
    d = np.array(a) - np.array(b)  # 0.10, 0.05, 0.15, 0.08
    sd = np.std(d, ddof=1)
    t = d.mean() / (sd / 2)
    r = paired_test(a, b)
    assert r["n"] == 4
    assert r["mean_diff"] == pytest.approx(0.095)
    assert r["ci"] == pytest.approx(T_975_3 * sd / 2)
    assert r["t"] == pytest.approx(t)
    assert r["p"] == pytest.approx(2 * st.t.sf(abs(t), 3))
    ref = st.ttest_rel(a, b)
    assert r["t"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    swapped = paired_test(b, a)
    assert swapped["mean_diff"] == pytest.approx(-0.095) and swapped["p"] == pytest.approx(r["p"])


def test_paired_is_more_sensitive_than_unpaired():
    # a large seed effect shared by both arms: the pairing removes it
    seed_effect = np.array([0.0, 0.5, -0.4, 0.9])
    a = 4.0 + seed_effect + np.array([0.11, 0.09, 0.10, 0.12])
    b = 4.0 + seed_effect
    assert paired_test(a, b)["p"] < 0.001
    assert st.ttest_ind(a, b).pvalue > 0.5


def test_paired_test_degenerate_cases():
    r = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r == {"mean_diff": 0.0, "ci": 0.0, "t": 0.0, "p": 1.0, "n": 3}
    shifted = paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted["mean_diff"] == 1.0 and shifted["ci"] == 0.0
    assert shifted["t"] == math.inf and shifted["p"] == 0.0
    one = paired_test([2.0], [1.5])
    assert one["mean_diff"] == 0.5 and one["n"] == 1
    assert all(math.isnan(one[k]) for k in ("ci", "t", "p"))
    empty = paired_test([], [])
    assert empty["n"] == 0 and math.isnan(empty["mean_diff"])
    bad = paired_test([1.0, float("nan"), 2.0], [1.0, 1.5, 2.5])
    assert all(math.isnan(bad[k]) for k in ("mean_diff", "ci", "t", "p"))
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0, 2.0, 3.0])


# ------------------------------------------------------------------ compare_table

LOSS = {
    # model: per-seed test loss for seeds 0, 1, 2
    "rnn": [4.60, 4.72, 4.55],
    "lstm": [4.20, 4.31, 4.18],
    "transformer": [4.05, 4.22, 4.01],
    "gru": [4.25, 4.30, 4.21],
}


def compare_runs() -> pd.DataFrame:
    rows = []
    for model, losses in LOSS.items():
        for seed, loss in enumerate(losses):
            rows.append(
                {
                    "model": model,
                    "seed": seed,
                    "test_loss": loss,
                    "test_ppl": math.exp(loss),
                    "test_accuracy": 0.5 - loss / 10,
                    "tokens_per_sec": 1000.0 + 10 * seed + len(model),
                    "run_id": f"{model}-{seed}",  # non-numeric: ignored
                }
            )
    return pd.DataFrame(rows)


def test_compare_table_order_best_and_cis():
    t = compare_table(compare_runs())
    assert list(t.index) == ["transformer", "lstm", "gru", "rnn"]
    assert t.index.name == "model"
    assert list(t["best"]) == [True, False, False, False]
    assert (t["n_seeds"] == 3).all()
    for metric in ("test_loss", "test_ppl", "test_accuracy", "tokens_per_sec"):
        assert f"{metric}_mean" in t.columns and f"{metric}_ci" in t.columns
    assert "seed_mean" not in t.columns and "run_id_mean" not in t.columns
    for model, losses in LOSS.items():
        x = np.array(losses)
        assert t.at[model, "test_loss_mean"] == pytest.approx(x.mean())
        assert t.at[model, "test_loss_ci"] == pytest.approx(T_975_2 * x.std(ddof=1) / math.sqrt(3))
        # perplexity: the mean of per-seed perplexities, with its CI on them ...
        ppl = np.exp(x)
        assert t.at[model, "test_ppl_mean"] == pytest.approx(ppl.mean())
        assert t.at[model, "test_ppl_ci"] == pytest.approx(T_975_2 * ppl.std(ddof=1) / math.sqrt(3))
        # ... and, separately, the perplexity of the mean loss (smaller: exp is convex)
        assert t.at[model, "ppl_of_mean_loss"] == pytest.approx(math.exp(x.mean()))
        assert t.at[model, "ppl_of_mean_loss"] < t.at[model, "test_ppl_mean"]


def test_compare_table_paired_deltas_vs_best():
    t = compare_table(compare_runs())
    best = np.array(LOSS["transformer"])
    assert t.at["transformer", "delta_vs_best"] == 0.0
    assert math.isnan(t.at["transformer", "p_vs_best"])
    for model in ("lstm", "gru", "rnn"):
        d = np.array(LOSS[model]) - best
        ref = st.ttest_rel(LOSS[model], best)
        assert t.at[model, "delta_vs_best"] == pytest.approx(d.mean())
        assert t.at[model, "delta_ci"] == pytest.approx(T_975_2 * d.std(ddof=1) / math.sqrt(3))
        assert t.at[model, "p_vs_best"] == pytest.approx(ref.pvalue)
        assert t.at[model, "n_paired"] == 3
        assert t.at[model, "delta_vs_best"] > 0


def test_compare_table_inner_join_on_seed():
    runs = compare_runs()
    runs = runs[~((runs["model"] == "lstm") & (runs["seed"] == 1))]  # lstm lacks seed 1
    extra = pd.DataFrame([{"model": "gru", "seed": 7, "test_loss": 9.0}])  # seed the best lacks
    runs = pd.concat([runs, extra], ignore_index=True)
    t = compare_table(runs)
    assert t.at["lstm", "n_seeds"] == 2 and t.at["gru", "n_seeds"] == 4
    best = LOSS["transformer"]
    ref = st.ttest_rel([LOSS["lstm"][0], LOSS["lstm"][2]], [best[0], best[2]])
    assert t.at["lstm", "n_paired"] == 2
    assert t.at["lstm", "delta_vs_best"] == pytest.approx(
        (LOSS["lstm"][0] - best[0] + LOSS["lstm"][2] - best[2]) / 2
    )
    assert t.at["lstm", "p_vs_best"] == pytest.approx(ref.pvalue)
    # gru's seed 7 (loss 9.0) enters its mean but not the paired delta
    assert t.at["gru", "n_paired"] == 3
    assert t.at["gru", "delta_vs_best"] == pytest.approx(np.mean(np.array(LOSS["gru"]) - best))
    assert math.isnan(t.at["gru", "test_ppl_mean"])  # test_ppl missing for seed 7: not dropped


def test_compare_table_other_metric_and_nan_model():
    runs = compare_runs()
    runs.loc[(runs["model"] == "lstm") & (runs["seed"] == 0), "test_loss"] = float(
        "nan"
    )  # diverged
    t = compare_table(runs)
    assert t.index[-1] == "lstm" and math.isnan(t.at["lstm", "test_loss_mean"])
    assert t.index[0] == "transformer" and bool(t.at["transformer", "best"])
    assert math.isnan(t.at["lstm", "delta_vs_best"]) and math.isnan(
        t.at["lstm", "ppl_of_mean_loss"]
    )
    by_acc = compare_table(compare_runs(), metric="test_accuracy")  # lower first by definition
    assert by_acc.index[0] == "rnn"


def test_compare_table_validates():
    runs = compare_runs()
    with pytest.raises(ValueError, match="metric"):
        compare_table(runs, metric="nope")
    with pytest.raises(ValueError, match="more than one run"):
        compare_table(pd.concat([runs, runs.iloc[:1]]))
    with pytest.raises(ValueError):
        compare_table(runs.drop(columns="seed"))


def test_compare_table_without_test_loss():
    runs = compare_runs().drop(columns="test_loss")
    t = compare_table(runs, metric="test_ppl")
    assert "ppl_of_mean_loss" not in t.columns
    assert t.index[0] == "transformer"


# ------------------------------------------------------------------ ablation_table

ABL = {
    # (param, value): per-seed losses for seeds 0, 1, 2
    ("n_layers", 4): [4.10, 4.20, 4.05],  # baseline of n_layers
    ("n_layers", 1): [4.40, 4.45, 4.37],
    ("n_layers", 8): [4.08, 4.22, 4.02],
    ("dropout", 0.3): [4.25, 4.33, 4.19],
    ("dropout", 0.0): [4.10, 4.20, 4.05],  # baseline of dropout
}


def ablation_runs(params=("n_layers", "dropout"), repeat_baseline=True) -> pd.DataFrame:
    rows = []
    base = {"n_layers": 4, "dropout": 0.0}
    for (param, value), losses in ABL.items():
        if param not in params or (not repeat_baseline and value == base[param]):
            continue
        for seed, loss in enumerate(losses):
            rows.append({"param": param, "value": value, "seed": seed, "test_loss": loss})
    return pd.DataFrame(rows, columns=["param", "value", "seed", "test_loss"]).astype(
        {"value": object}
    )


def check_vs_baseline(row, losses, base):
    d = np.array(losses) - np.array(base)
    assert row["delta"] == pytest.approx(d.mean())
    assert row["delta_ci"] == pytest.approx(T_975_2 * d.std(ddof=1) / math.sqrt(3))
    assert row["p"] == pytest.approx(st.ttest_rel(losses, base).pvalue)


def test_ablation_table_repeated_baseline_rows():
    t = ablation_table(ablation_runs(), {"n_layers": 4, "dropout": 0.0})
    assert list(zip(t["param"], t["value"], strict=True)) == [
        ("n_layers", "4"),
        ("n_layers", "1"),
        ("n_layers", "8"),
        ("dropout", "0.3"),
        ("dropout", "0"),  # integral floats lose ".0"
    ]
    assert list(t["is_baseline"]) == [True, False, False, False, True]
    assert (t["n_seeds"] == 3).all()
    base = ABL[("n_layers", 4)]
    for i, key in ((1, ("n_layers", 1)), (2, ("n_layers", 8)), (3, ("dropout", 0.3))):
        check_vs_baseline(t.iloc[i], ABL[key], base)
        x = np.array(ABL[key])
        assert t.iloc[i]["test_loss_mean"] == pytest.approx(x.mean())
        assert t.iloc[i]["test_loss_ci"] == pytest.approx(T_975_2 * x.std(ddof=1) / math.sqrt(3))
    assert t.iloc[0]["delta"] == 0.0 and math.isnan(t.iloc[0]["p"])
    assert list(t["best"]) == [False, False, True, False, True]
    assert t.iloc[0]["ppl_of_mean_loss"] == pytest.approx(math.exp(np.mean(base)))


def test_ablation_table_shared_baseline_rows():
    runs = ablation_runs(params=("n_layers",), repeat_baseline=False)
    shared = pd.DataFrame(
        [
            {"param": "baseline", "value": "spec", "seed": s, "test_loss": v}
            for s, v in enumerate(ABL[("n_layers", 4)])
        ]
    )
    t = ablation_table(pd.concat([shared, runs], ignore_index=True), 4)
    assert list(t["value"]) == ["4", "1", "8"]  # baseline first when it has only shared rows
    assert list(t["param"]) == ["n_layers"] * 3
    assert list(t["is_baseline"]) == [True, False, False]
    check_vs_baseline(t.iloc[1], ABL[("n_layers", 1)], ABL[("n_layers", 4)])
    # both conventions at once: the param's own rows win, shared rows fill missing seeds
    both = pd.concat([shared, ablation_runs(params=("n_layers",))], ignore_index=True)
    both = both[~((both["param"] == "n_layers") & (both["value"] == 4) & (both["seed"] == 2))]
    t2 = ablation_table(both, {"n_layers": 4})
    assert t2.iloc[0]["is_baseline"] and t2.iloc[0]["n_seeds"] == 3
    check_vs_baseline(t2.iloc[1], ABL[("n_layers", 1)], ABL[("n_layers", 4)])


def test_ablation_table_inner_join_and_float_labels():
    runs = ablation_runs(params=("n_layers",))
    runs = runs[~((runs["value"] == 8) & (runs["seed"] == 0))]
    runs["value"] = runs["value"].astype(
        float
    )  # 4 -> 4.0: still labelled "4" and matched to baseline 4
    t = ablation_table(runs, 4)
    assert list(t["value"]) == ["4", "1", "8"]
    row = t.iloc[2]
    assert row["n_seeds"] == 2 and row["n_paired"] == 2
    ref = st.ttest_rel(ABL[("n_layers", 8)][1:], ABL[("n_layers", 4)][1:])
    assert row["p"] == pytest.approx(ref.pvalue)


def test_ablation_table_validates():
    runs = ablation_runs()
    with pytest.raises(ValueError, match="more than one run"):
        ablation_table(pd.concat([runs, runs.iloc[3:4]]), {"n_layers": 4, "dropout": 0.0})
    with pytest.raises(ValueError, match="metric"):
        ablation_table(runs, 4, metric="test_ppl")


# ------------------------------------------------------------------ rendering


def test_render_compare_table():
    t = compare_table(compare_runs())
    table = render_table(t, "compare")
    assert isinstance(table, Table)
    assert table.row_count == 4
    text = render_text(table)
    assert text.count("★") == 1
    star_line = next(line for line in text.splitlines() if "★" in line)
    assert "transformer" in star_line
    assert "compare" in text and "±" in text


def test_render_ablation_and_custom_columns():
    t = ablation_table(ablation_runs(), {"n_layers": 4, "dropout": 0.0})
    table = render_table(
        t,
        "ablate",
        columns=[("param", "param"), ("value", "value"), ("test_loss", "loss"), ("p", "p")],
    )
    assert table.row_count == len(t) and len(table.columns) == 5  # marker column + 4
    text = render_text(table)
    assert "(baseline)" in text and text.count("★") == 2


def test_formatting():
    assert format_p(0.01234) == "0.012"
    assert format_p(0.0004) == "<0.001"
    assert format_p(float("nan")) == "–"
    assert format_mean_ci(4.12345, 0.05678) == "4.123 ± 0.057"
    assert format_mean_ci(0.0123, 0.0042, signed=True) == "+0.0123 ± 0.0042"
    assert format_mean_ci(123456.7, 2345.6) == "123,500 ± 2,300"
    assert format_mean_ci(float("nan"), 0.1) == "–"
    assert format_mean_ci(4.5, float("nan")) == "4.5"
