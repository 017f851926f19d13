"""Building specs: a validated spec from a file or mapping, and the derived spec of one model.

``build_spec`` is the one way a spec comes to exist: pydantic validation, the model registry and
the search spaces are all checked before any file, study or MLflow run is created.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmbench.config.params import OPTIMIZER_KIND, check_search, param_path
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
    """``spec`` for architecture ``arch`` with its recipe and ``params`` applied (validated like any spec).

    The spec's own model config only applies to its own architecture; other architectures
    start from the same preset with their defaults. The architecture's recipe (optimizer, lr,
    weight decay, clipping, schedule) fills every train setting the spec left to its default
    (:func:`with_recipe`); then ``params`` (e.g. a trial's) and ``extra`` overrides apply. An
    ``optimizer`` parameter replaces the spec's optimizer section when it names another one.
    """
    from lmbench.models import get_arch

    raw = dump_raw(spec)
    raw["model"] = {"arch": arch, "preset": spec.model.preset,
                    "config": dict(spec.model.config) if arch == spec.model.arch else {}}
    rest = {name: value for name, value in (params or {}).items() if param_path(arch, name) != OPTIMIZER_KIND}
    kinds = [value for name, value in (params or {}).items() if name not in rest]
    raw["train"] = with_recipe(raw["train"], get_arch(arch).recipe, kinds[-1] if kinds else None)
    overrides = [f"{param_path(arch, k)}={json.dumps(v)}" for k, v in rest.items()]
    return build_spec(raw, overrides + list(extra or []))


def with_recipe(train: dict[str, Any], recipe, kind: str | None = None) -> dict[str, Any]:
    """The ``train`` section the user set (``dump_raw``: set values only) laid over ``recipe``.

    Every value the user set wins; the optimizer and schedule sections merge field by field (a
    warmup the user set, in steps or as a fraction, replaces the recipe's).
    ``kind`` (a searched or ablated optimizer) replaces a different optimizer the user named.
    The recipe's lr and weight decay follow the optimizer: for an optimizer other than the
    recipe's own they are that optimizer's defaults (:meth:`~lmbench.models.recipes.Recipe.train_section`).
    """
    user = dict(train)
    mine = user.pop("optimizer", None)
    if isinstance(mine, str):  # the short form, as in a hand-written raw mapping
        mine = {"kind": mine}
    if mine is not None and kind is not None and mine.get("kind", "adamw") != kind:
        mine = None  # a searched optimizer replaces the spec's, settings and all
    kind = kind or (mine.get("kind", "adamw") if mine is not None else recipe.kind)
    base = recipe.train_section(kind)
    merged = {**base, **user}
    merged["optimizer"] = {**base["optimizer"], **(mine or {})}
    schedule = base.get("schedule", {})
    if {"warmup_steps", "warmup_fraction"} & set(user.get("schedule", {})):  # the user's warmup, not both
        schedule = {k: v for k, v in schedule.items() if not k.startswith("warmup_")}
    merged["schedule"] = {**schedule, **user.get("schedule", {})}
    return merged


def sized(spec: ExperimentSpec, vocab_size: int) -> ExperimentSpec:
    """With ``compare.match_params``, resize the model so its non-embedding count matches
    (``vocab_size``: the prepared data's, which tied output layers depend on)."""
    target = spec.compare.match_params
    if not target:
        return spec
    from lmbench.models.sizing import match_params  # builds models: torch, only when sizing

    overrides, _ = match_params(spec.model.arch, vocab_size, spec.model.preset, dict(spec.model.config), target)
    return build_spec(dump_raw(spec), [f"model.config={json.dumps(overrides)}"])
