"""Building specs: a validated spec from a file or mapping, and the derived spec of one model.

``build_spec`` is the one way a spec comes to exist: pydantic validation, the model registry and
the search spaces are all checked before any file, study or MLflow run is created.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmbench.config.params import check_search, param_path
from lmbench.config.raw import dump_raw, read_yaml, validate
from lmbench.config.spec import ExperimentSpec


def build_spec(raw: dict[str, Any] | None = None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Validate a raw mapping plus ``--set`` overrides into a fully checked ExperimentSpec."""
    spec = validate(raw, overrides)
    check_search(spec)
    return spec


def load_spec(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Load a YAML spec (or the defaults when ``path`` is None) and apply overrides."""
    raw = read_yaml(path) if path else {}
    return build_spec(raw, overrides)


def model_spec(spec: ExperimentSpec, arch: str, params: dict[str, Any] | None = None,
               extra: list[str] | None = None) -> ExperimentSpec:
    """``spec`` for architecture ``arch`` with ``params`` applied (validated like any spec).

    The spec's own model config only applies to its own architecture; other architectures
    start from the same preset with their defaults.
    """
    raw = dump_raw(spec)
    raw["model"] = {"arch": arch, "preset": spec.model.preset,
                    "config": dict(spec.model.config) if arch == spec.model.arch else {}}
    overrides = [f"{param_path(arch, k)}={json.dumps(v)}" for k, v in (params or {}).items()]
    return build_spec(raw, overrides + list(extra or []))


def sized(spec: ExperimentSpec, vocab_size: int) -> ExperimentSpec:
    """With ``compare.match_params``, resize the model so its non-embedding count matches
    (``vocab_size``: the prepared data's, which tied output layers depend on)."""
    target = spec.compare.match_params
    if not target:
        return spec
    from lmbench.models.sizing import match_params  # builds models: torch, only when sizing

    overrides, _ = match_params(spec.model.arch, vocab_size, spec.model.preset, dict(spec.model.config), target)
    return build_spec(dump_raw(spec), [f"model.config={json.dumps(overrides)}"])
