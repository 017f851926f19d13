"""Samplers and pruners of the studies, seeded per trial so that every process draws alike."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import optuna

from lmbench.config import ExperimentSpec, grid_values


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ask the trial for one value per dimension, define-by-run: a dimension with a ``when``
    condition (e.g. ``lr_sgd`` when ``optimizer`` is ``sgd``) is sampled only when the values
    sampled before it meet the condition, so a trial never holds a setting its optimizer lacks."""
    out: dict[str, Any] = {}
    for name, d in space.items():
        if any(out.get(key, _UNSET) not in values for key, values in d.get("when", {}).items()):
            continue
        if d["type"] == "categorical":
            out[name] = trial.suggest_categorical(name, d["choices"])
        elif d["type"] == "int":
            out[name] = trial.suggest_int(name, d["low"], d["high"], log=d.get("log", False), step=int(d.get("step") or 1))
        else:
            out[name] = trial.suggest_float(name, d["low"], d["high"], log=d.get("log", False), step=d.get("step"))
    return out


_UNSET = object()  # a condition on a dimension that was not sampled is not met


def make_sampler(spec: ExperimentSpec, space: dict[str, dict[str, Any]]):
    """The study's sampler, seeded per trial (see :func:`_trial_seeded_class`)."""
    return _trial_seeded_class()(lambda seed: _sampler(spec, space, seed), spec.search.seed)


def _sampler(spec: ExperimentSpec, space: dict[str, dict[str, Any]], seed: int):
    s = spec.search
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.sampler == "grid":
        # the grid's shuffled order comes from the seed and must be the same in every process;
        # trial k takes grid point k, so nothing is replayed
        grid = {name: grid_values(d, 3) for name, d in space.items()}
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    # a third of the budget (at least 3, at most 10) explores at random before TPE models it
    startup = min(10, max(3, s.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup,
                                      constant_liar=True)


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed that is a pure function of (search.seed, trial number), well mixed."""

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


@functools.cache
def _trial_seeded_class():
    """The sampler class, built on first use so that importing this module stays light."""

    class _TrialSeeded(optuna.samplers.BaseSampler):
        """Delegates to a fresh sampler per trial, seeded by ``trial_seed(seed, trial.number)``.

        Optuna samplers keep their random state in the process. Every process that opens a study
        (a re-run that continues it, each ``--workers`` process, each machine) would build a
        sampler with the same seed and replay the same draws: the random start-up trials would
        be duplicates of each other. TPE, random and grid samplers read everything else from the
        study's history, so a fresh instance per trial loses nothing and makes trial k's draw
        depend only on the seed, k and the history - reproducible and never replayed.
        """

        def __init__(self, factory, seed: int):
            self._factory, self._seed = factory, seed
            self._inner: dict[int, Any] = {}  # trial number -> its sampler (the last few)

        def _for(self, trial):
            inner = self._inner.get(trial.number)
            if inner is None:
                inner = self._inner[trial.number] = self._factory(trial_seed(self._seed, trial.number))
                for old in sorted(self._inner)[:-8]:
                    del self._inner[old]
            return inner

        def before_trial(self, study, trial) -> None:
            self._for(trial).before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._for(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._for(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self._for(trial).after_trial(study, trial, state, values)
            self._inner.pop(trial.number, None)

        def reseed_rng(self) -> None:  # seeds are per trial already
            pass

    return _TrialSeeded


def make_pruner(spec: ExperimentSpec):
    """Pruners judge ``val_loss`` reported at each evaluation (the resource is the optimizer step).

    Hyperband's smallest rung is the first evaluation: below it there is nothing to compare, and
    with ``min_resource=1`` every bracket's early rungs collapsed onto that first report.
    """

    kind = spec.search.pruner
    first_eval = spec.train.eval_interval
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first_eval, max_resource="auto", reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()
