"""The scale section without training: points from known laws go through the analysis, the
figures and the views (the fitted path a tiny real sweep may not reach), and the planning helpers.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from lmbench.config import load_spec, options
from lmbench.report.scaling import ScaleSection, analyse
from lmbench.report.scaling_files import results_payload, scaling_frame
from lmbench.report.scaling_views import present
from lmbench.stats.scaling import size_ladder
from lmbench.tuning.points import eval_interval, hyperparameters, size_tolerance
from lmbench.tuning.storage import open_storage, study_name

BUDGETS = (1e9, 4e9, 1.6e10, 6.4e10)
# arch -> (E, A, alpha) of L*(C) = E + A C^-alpha; rnn starts lower, gpt falls faster: they cross
LAWS = {"rnn": (2.8, 30.0, 0.12), "gpt": (2.3, 2000.0, 0.3)}
FLOOR = 2.2


def known_runs(seed: int = 0) -> pd.DataFrame:
    """Runs whose loss is a parabola in ln N around N* = 0.05 sqrt(C), on the arch's L*(C), with
    seed noise; FLOPs per token 6 N + 20000 (a head), D = C / that."""
    rng = np.random.default_rng(seed)
    rows = []
    for arch, (floor, amplitude, alpha) in LAWS.items():
        for compute in BUDGETS:
            n_star = 0.05 * math.sqrt(compute)
            for params in size_ladder(1.2 * n_star, 5, 2.0):
                flops = 6 * params + 20000
                for run_seed in range(3):
                    loss = (
                        floor
                        + amplitude * compute**-alpha
                        + 0.05 * math.log(params / n_star) ** 2
                        + rng.normal(0, 0.004)
                    )
                    rows.append(
                        {
                            "arch": arch,
                            "compute": compute,
                            "target": params,
                            "params": params,
                            "seed": run_seed,
                            "loss": loss,
                            "val_loss": loss,
                            "floor": FLOOR,
                            "tokens": compute / flops,
                            "flops_per_token": flops,
                            "spent": compute,
                            "spent_ratio": 1.0,
                            "train_seconds": 1.0,
                            "run_id": f"{arch}-{len(rows)}",
                        }
                    )
    return pd.DataFrame(rows)


def section(runs: pd.DataFrame) -> ScaleSection:
    root = SimpleNamespace(
        info=SimpleNamespace(run_id="root", run_name="scale-x", experiment_id="1"),
        data=SimpleNamespace(
            params={
                "models": "rnn,gpt",
                "compute": "1e9,4e9",
                "sizes": "5",
                "seeds": "3",
                "from": "None",
            },
            tags={},
        ),
    )
    sec = ScaleSection("scale", root, groups=list(LAWS), runs=runs)
    sec.hparams = {
        arch: {"source": "recipe", "params": {}, "train": {"lr": 0.001}} for arch in LAWS
    }
    sec.budgets = list(BUDGETS)
    sec.analysis = analyse(runs, n_resamples=200)
    return sec


def figure(key, caption, alt, png):
    return SimpleNamespace(key=key, caption=caption, alt=alt, png=png)


def test_known_laws_are_fitted_with_intervals_and_crossings():
    analysis = analyse(known_runs(), n_resamples=200)
    assert analysis.floor == FLOOR
    for arch, (_, _, alpha) in LAWS.items():
        boot = analysis.fixed[arch]
        assert boot.fit.loss_law.fittable and boot.floor.estimate == FLOOR
        free = analysis.free[arch]
        assert len(free.fit.fitted) == len(BUDGETS)
        assert free.n_opt_exponent.low < 0.5 < free.n_opt_exponent.high  # N* = 0.05 C^0.5
        assert free.fit.loss_law.fittable and free.alpha.low < alpha < free.alpha.high
    optima = analysis.optima
    assert optima["fittable"].all()
    # D* = C / (6 N* + 20000) with the fitted N*
    expected = optima["compute"] / (6 * optima["n_opt"] + 20000)
    assert np.allclose(optima["d_opt"], expected, rtol=0.02)
    assert (optima["d_opt_low"] <= optima["d_opt"]).all() and (
        optima["d_opt"] <= optima["d_opt_high"]
    ).all()
    (free_cross,) = [c for c in analysis.crossovers if c["law"] == "free E"]
    assert free_cross["found"] and free_cross["lower_above"] == "gpt"
    assert free_cross["ci_low"] <= free_cross["compute"] <= free_cross["ci_high"]


def test_the_section_renders_every_figure_and_marks_extrapolation():
    sec = section(known_runs())
    part = present(sec, {"rnn": "#0173b2", "gpt": "#cc78bc"}, figure)
    assert [f.key for f in part["figures"]] == ["isoflop", "frontier"]
    assert all(f.png.startswith(b"\x89PNG") and len(f.png) > 10_000 for f in part["figures"])
    titles = [b["title"] for b in part["blocks"]]
    assert titles == [
        "Hyperparameters",
        "IsoFLOP curves",
        "Compute-optimal frontier and scaling laws",
        "Compute-optimal size and tokens per budget",
        "Crossovers",
        "Every run",
    ]
    crossings = next(b for b in part["blocks"] if b["title"] == "Crossovers")["view"]
    notes = [row[-1].text for row in crossings.rows]
    assert any(n.startswith(("extrapolated", "within the budgets")) for n in notes)
    assert "rnn and gpt cross at C ≈" in part["answer"] and "α =" in part["answer"]
    frame = scaling_frame(sec)
    assert set(frame["record"]) == {"point", "optimum", "law", "crossover"}
    assert len(results_payload(sec, "x")["points"]) == len(sec.runs)


def test_an_unfittable_budget_is_not_drawn_and_says_what_to_train():
    runs = known_runs()
    # at the smallest budget keep only sizes below the optimum: the minimum is at the edge
    small = runs[
        (runs["compute"] == BUDGETS[0]) & (runs["params"] > 0.05 * math.sqrt(BUDGETS[0]))
    ].index
    sec = section(runs.drop(small))
    optima = sec.analysis.optima
    row = optima[(optima["arch"] == "rnn") & (optima["compute"] == BUDGETS[0])].iloc[0]
    assert not row["fittable"] and row["suggested_sizes"] and math.isnan(row["n_opt"])
    part = present(sec, {}, figure)
    table = next(b for b in part["blocks"] if b["title"].startswith("Compute-optimal size"))["view"]
    assert any("train sizes" in r[-1].text for r in table.rows)


# -- planning helpers ----------------------------------------------------------------------------


def test_eval_interval_ends_on_the_last_step():
    assert eval_interval(100, 4) == 25
    assert eval_interval(97, 4) == 97  # a prime: one evaluation, at the end
    assert eval_interval(60, 1) == 60
    for steps in range(25, 300, 7):
        for wanted in (1, 2, 4):
            interval = eval_interval(steps, wanted)
            assert steps % interval == 0 and steps // interval <= wanted


def test_neighbouring_rungs_can_never_be_sized_alike():
    for ratio in (1.5, 2.0, 4.0):
        tol = size_tolerance(ratio)
        assert (1 + tol) < ratio * (1 - tol)


def test_hyperparameters_come_from_the_best_trial_without_sizes(isolated):
    storage = open_storage(None, "cmp")
    study = optuna.create_study(study_name=study_name("cmp", "gpt"), storage=storage)
    for value, lr in ((3.1, 0.001), (2.9, 0.004)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "d_model": 64, "n_layers": 3, "dropout": 0.1},
                value=value,
                distributions={
                    "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                    "d_model": optuna.distributions.IntDistribution(16, 128),
                    "n_layers": optuna.distributions.IntDistribution(1, 4),
                    "dropout": optuna.distributions.FloatDistribution(0.0, 0.3),
                },
            )
        )
    spec = load_spec(
        None, options.overrides(True, options.scale_overrides(True, "gpt", **{"from": "cmp"}))
    )
    found = hyperparameters(spec, "gpt")
    assert found["params"] == {"lr": 0.004, "dropout": 0.1}  # width and depth are the ladder's
    assert found["source"].startswith("best trial 1 of study cmp/gpt")
    assert found["train"]["lr"] == pytest.approx(0.004)
