"""Experiment specs: the pydantic models, loading and overrides, and parameters by name.

Light to import (pydantic and yaml only): the model registry, which imports torch, is imported
by the functions that validate against it.
"""

from lmbench.config.load import build_spec, load_spec, model_spec, sized
from lmbench.config.params import grid_values, param_path, space_for
from lmbench.config.raw import dump_raw, flatten, resolved_dict, spec_hash, to_yaml
from lmbench.config.spec import BudgetSpec, ExperimentSpec, GenerationSpec, ScheduleSpec, TrainSpec

__all__ = [
    "BudgetSpec", "ExperimentSpec", "GenerationSpec", "ScheduleSpec", "TrainSpec", "build_spec", "dump_raw",
    "flatten", "grid_values", "load_spec", "model_spec", "param_path", "resolved_dict", "sized", "space_for",
    "spec_hash", "to_yaml",
]
