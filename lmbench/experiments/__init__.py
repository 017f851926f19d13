"""The commands as library calls: train, tune, compare, ablate (each returns its results)."""

from lmbench.experiments.ablate import ablate
from lmbench.experiments.compare import compare, tune
from lmbench.experiments.single import resume_training, run_training

__all__ = ["ablate", "compare", "resume_training", "run_training", "tune"]
