"""Samplers and pruners: per-trial seeding (no replayed draws across processes), grids, rungs."""

from __future__ import annotations

import pytest

from lmbench.config import build_spec, space_for
from lmbench.tuning.samplers import make_pruner, suggest
from lmbench.tuning.storage import open_storage, open_study
from lmbench.tuning.trials import tell


def _spec(sampler: str = "tpe", trials: int = 9, **extra: str):
    overrides = [f"search.sampler={sampler}", f"search.trials={trials}", "name=s"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return build_spec({}, overrides)


def _lr(params: dict) -> float:
    """The trial's learning rate: ``lr``, or ``lr_<optimizer>`` when several optimizers are searched."""
    return params["lr"] if "lr" in params else params[f"lr_{params['optimizer']}"]


def _one_trial(spec, storage, value_of=_lr) -> dict:
    """Open the study afresh (as a new process or a re-run would), ask, suggest, tell."""
    study = open_study(spec, "gru", storage)
    trial = study.ask()
    params = suggest(trial, space_for(spec, "gru"))
    tell(study, trial, value_of(params))
    return params


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_start_up_draws_are_not_replayed_by_new_processes(sampler):
    """Each open_study builds a new sampler with search.seed: trial k must still get its own draw.

    Before per-trial seeding every re-run and every --workers process replayed the first draw,
    so the random start-up trials of a continued or shared study were copies of each other.
    """
    spec = _spec(sampler)
    storage = open_storage(None, spec.experiment_name)
    drawn = [_one_trial(spec, storage) for _ in range(4)]
    lrs = [_lr(p) for p in drawn]
    assert len(set(lrs)) == len(lrs), lrs


def test_draws_are_a_function_of_seed_and_history(tmp_path):
    """Same seed and same history give the same trials; another seed gives others."""
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        spec = _spec("tpe", 6, **{"search.seed": str(seed)})
        storage = open_storage(f"sqlite:///{tmp_path / name}.db", spec.experiment_name)
        runs[name] = [_one_trial(spec, storage) for _ in range(6)]  # 3 random, then TPE
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_grid_is_covered_exactly_once_across_reopenings():
    space = {"lr": "{float: [0.001, 0.01], log: true}", "dropout": "{float: [0.0, 0.2]}",
             "d_model": "{categorical: [16]}", "d_embed": "{categorical: [16]}", "n_layers": "{categorical: [1]}",
             "tie_weights": "{categorical: [false]}", "weight_decay": "{categorical: [0.0]}"}
    spec = _spec("grid", 9, **{f"search.space.gru.{k}": v for k, v in space.items()})
    storage = open_storage(None, spec.experiment_name)
    seen = {(p["lr"], p["dropout"]) for p in (_one_trial(spec, storage) for _ in range(9))}
    assert len(seen) == 9


def test_hyperband_first_rung_is_the_first_evaluation():
    pruner = make_pruner(_spec(**{"train.eval_interval": "25"}))
    assert pruner._min_resource == 25


@pytest.mark.parametrize(("budget", "step", "tokens", "last"), [
    ("{steps: 100}", 50, 0, True),          # the next evaluation (step 100) is where the run ends
    ("{steps: 101}", 50, 0, False),
    ("{tokens: 200000}", 50, 204800, True),  # 4096 tokens a step: a 49-step trial evaluates once
    ("{tokens: 500000}", 50, 204800, False),
    ("{seconds: 10}", 50, 204800, False),    # a time budget cannot tell: pruning stays possible
])
def test_last_evaluation_of_a_trial_is_not_pruned(budget, step, tokens, last):
    from lmbench.tuning.trials import last_eval

    spec = _spec(**{"train.budget": budget, "train.eval_interval": "50"})
    assert last_eval(spec, step, tokens) is last
