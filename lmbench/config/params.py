"""Parameters of a spec by name: dotted paths, search spaces, grids, and per-model specs.

``lr``, ``dropout`` or ``train.schedule.warmup_steps`` name the same things in ``--param``, in
``search.space`` and in ablations; these helpers turn such names into spec keys and derive the
spec of one model (with given parameters, or sized to a parameter budget)."""

from __future__ import annotations

import json
from typing import Any

from lmbench.config.raw import validate
from lmbench.config.spec import ExperimentSpec, TrainSpec
from lmbench.errors import SpecError

# Training hyperparameters every architecture is tuned over, besides its own model space.
TRAIN_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
}


# Short names of train parameters that are not plain fields of TrainSpec.
TRAIN_ALIASES = {"schedule": "train.schedule.kind", "warmup": "train.schedule.warmup_steps"}




def param_path(arch: str, name: str, where: str = "--param") -> str:
    """The dotted spec key of a parameter: a model config field, a train field, or a full path."""
    from lmbench.models import get_arch

    fields = set(get_arch(arch).config_cls.__dataclass_fields__)
    if "." in name:
        root = name.split(".")[0]
        if root not in ("model", "train", "data"):
            raise SpecError(where, f"{name!r} must start with model., train. or data.")
        return name
    if name in fields:
        return f"model.config.{name}"
    if name in TRAIN_ALIASES:
        return TRAIN_ALIASES[name]
    if name in TrainSpec.model_fields and name not in ("budget", "schedule", "device"):
        return f"train.{name}"
    known = sorted(fields) + sorted(TRAIN_SPACE) + sorted(TRAIN_ALIASES)
    raise SpecError(where, f"{arch} has no parameter {name!r} (known: {', '.join(known)})")


def space_for(spec: ExperimentSpec, arch: str) -> dict[str, dict[str, Any]]:
    """The search space of ``arch``: train params, the registry's model space, spec overrides."""
    from lmbench.models import get_arch

    info = get_arch(arch)
    space = {**TRAIN_SPACE, **info.search_space}
    if spec.compare.match_params and info.sizing:  # sizes are solved for the budget, not searched
        space = {k: v for k, v in space.items() if k not in info.sizing.fields}
    for name, dist in spec.search.space.get(arch, {}).items():
        space[name] = dist.as_dist()
    return space


def check_space(arch: str, name: str, dist: dict[str, Any], where: str) -> None:
    """A space entry must name a real parameter and its extreme values must be valid there.

    Only errors about this parameter itself are rejected: a value that clashes with another
    parameter (d_model vs n_heads) may be fine in combination, so such a trial fails on its own.
    """
    path = param_path(arch, name, where)
    for value in grid_values(dist, 3 if dist["type"] != "categorical" else 1000):
        try:
            validate({"model": {"arch": arch}}, [f"{path}={json.dumps(value)}"])
        except SpecError as error:
            if error.where == path:
                raise SpecError(where, f"value {value!r} is invalid ({error.reason})") from None


def grid_values(dist: dict[str, Any], points: int = 5) -> list[Any]:
    """A sensible grid over one dimension (used by the grid sampler and default ablation values)."""
    if dist["type"] == "categorical":
        return list(dist["choices"])
    low, high = dist["low"], dist["high"]
    if dist["type"] == "int":
        if high - low + 1 <= points:
            return list(range(low, high + 1))
        return sorted({round(low + i * (high - low) / (points - 1)) for i in range(points)})
    if dist.get("log"):
        return [float(low * (high / low) ** (i / (points - 1))) for i in range(points)]
    return [float(low + i * (high - low) / (points - 1)) for i in range(points)]


def check_search(spec: ExperimentSpec) -> None:
    """Models named in compare/ablate/search.space exist, and every space names real parameters."""
    from lmbench.models import get_arch

    for index, name in enumerate(spec.compare.models):
        get_arch(name, where=f"compare.models.{index}")
    if spec.ablate.model:
        get_arch(spec.ablate.model, where="ablate.model")
    for model, params in spec.search.space.items():
        get_arch(model, where=f"search.space.{model}")
        for name, dist in params.items():
            check_space(model, name, dist.as_dist(), where=f"search.space.{model}.{name}")
