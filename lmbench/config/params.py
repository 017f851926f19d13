"""Parameters of a spec by name: dotted paths, search spaces, grids, and per-model specs.

``lr``, ``dropout`` or ``train.schedule.warmup_steps`` name the same things in ``--param``, in
``search.space`` and in ablations; these helpers turn such names into spec keys and derive the
spec of one model (with given parameters, or sized to a parameter budget)."""

from __future__ import annotations

import json
from typing import Any

from lmbench.config.raw import is_set, validate
from lmbench.config.spec import OPTIMIZER_FIELDS, OPTIMIZER_KINDS, ExperimentSpec, TrainSpec
from lmbench.errors import SpecError

OPTIMIZER_KIND = "train.optimizer.kind"
# Short names of parameters that are not plain fields of TrainSpec or of a model config.
TRAIN_ALIASES = {"schedule": "train.schedule.kind", "warmup": "train.schedule.warmup_steps",
                 "optimizer": OPTIMIZER_KIND, "order": "data.order"}
# Values an ablation sweeps for categorical settings that no search space lists.
CHOICES: dict[str, list[Any]] = {OPTIMIZER_KIND: list(OPTIMIZER_KINDS), "data.order": ["stream", "random"],
                                 "train.schedule.kind": ["constant", "cosine", "exponential", "plateau"]}
_OPTIMIZER_SETTINGS = {name for names in OPTIMIZER_FIELDS.values() for name in names}



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
    if name.removeprefix("lr_") in OPTIMIZER_KINDS:  # the learning rate of one optimizer in a search
        return "train.lr"
    if name in _OPTIMIZER_SETTINGS:
        return f"train.optimizer.{name}"
    if name in TrainSpec.model_fields and name not in ("budget", "schedule", "device", "optimizer"):
        return f"train.{name}"
    known = sorted(fields) + ["lr", "lr_<optimizer>", "weight_decay", "grad_clip"] + sorted(TRAIN_ALIASES)
    raise SpecError(where, f"{arch} has no parameter {name!r} (known: {', '.join(known)})")


def space_for(spec: ExperimentSpec, arch: str) -> dict[str, dict[str, Any]]:
    """The search space of ``arch``: its recipe's training ranges, the registry's model space, then
    the spec's own ``search.space`` entries, with the optimizer's settings made conditional.

    The optimizers searched are the spec's ``optimizer`` entry, else the one the spec sets (or
    implies by giving a plain ``lr`` range), else the recipe's. With several, each has its own
    learning rate ``lr_<kind>`` sampled only when that optimizer is (define-by-run: every trial
    is valid); with one, the learning rate is ``lr``."""
    from lmbench.models import get_arch

    info = get_arch(arch)
    user = {name: dist.as_dist() for name, dist in spec.search.space.get(arch, {}).items()}
    kinds = searched_optimizers(spec, arch, user)
    space = {**info.recipe.search_space(kinds), **info.search_space}
    if spec.compare.match_params and info.sizing:  # sizes are solved for the budget, not searched
        space = {k: v for k, v in space.items() if k not in info.sizing.fields}
    return conditioned({**space, **user}, kinds, info.recipe, f"search.space.{arch}")


def searched_optimizers(spec: ExperimentSpec, arch: str, user: dict[str, dict[str, Any]]) -> list[str]:
    """Which optimizers a search of ``arch`` chooses between (see :func:`space_for`)."""
    from lmbench.models import get_arch

    recipe = get_arch(arch).recipe
    if "optimizer" in user:
        if user["optimizer"]["type"] != "categorical":
            raise SpecError(f"search.space.{arch}.optimizer", "give the optimizers as categorical: [...]")
        return list(dict.fromkeys(user["optimizer"]["choices"]))
    if is_set(spec.train, "optimizer"):
        return [spec.train.optimizer.kind]
    if "lr" in user:  # one learning-rate range means one optimizer: the recipe's own
        return [recipe.kind]
    return list(recipe.optimizers)


def conditioned(space: dict[str, dict[str, Any]], kinds: list[str], recipe, where: str) -> dict[str, dict[str, Any]]:
    """``space`` with every optimizer-specific dimension sampled only for its optimizer(s).

    ``lr_<kind>`` and optimizer settings (momentum, betas, ...) of optimizers not searched are
    dropped (or rejected when the user asked for them); with a single optimizer the condition is
    moot and ``lr_<kind>`` becomes ``lr``."""
    multi = len(kinds) > 1
    if multi and "lr" in space:
        raise SpecError(f"{where}.lr", f"with several optimizers ({', '.join(kinds)}) each needs its own "
                        f"range: give {', '.join(f'lr_{k}' for k in kinds)} instead of lr")
    out = {"optimizer": space["optimizer"]} if "optimizer" in space else {}
    for kind in kinds:  # every searched optimizer has a learning rate
        low, high = recipe.lr_range(kind)
        name = f"lr_{kind}" if multi else "lr"
        out[name] = space.get(name) or space.get(f"lr_{kind}") or {"type": "float", "low": low, "high": high,
                                                                   "log": True}
    for name, dist in space.items():
        if name == "optimizer" or name == "lr" or name.removeprefix("lr_") in OPTIMIZER_KINDS:
            continue
        owners = [k for k in kinds if name not in _OPTIMIZER_SETTINGS or name in OPTIMIZER_FIELDS[k]]
        owners = [k for k in owners if k in dist.get("when", {}).get("optimizer", owners)]
        if not owners:
            if name in _OPTIMIZER_SETTINGS:
                raise SpecError(f"{where}.{name}", f"{name} is no setting of {', '.join(kinds)} (the optimizers "
                                "searched); set train.optimizer or search optimizer")
            continue
        out[name] = {**dist, "when": {**dist.get("when", {}), "optimizer": owners}}
    for name, dist in out.items():  # a condition every searched optimizer meets is no condition
        when = {k: v for k, v in dist.get("when", {}).items() if not (k == "optimizer" and set(kinds) <= set(v))}
        out[name] = {**{k: v for k, v in dist.items() if k != "when"}, **({"when": when} if when else {})}
        if multi and name.removeprefix("lr_") in kinds:
            out[name]["when"] = {"optimizer": [name.removeprefix("lr_")]}
    return out


def check_space(arch: str, name: str, dist: dict[str, Any], where: str) -> None:
    """A space entry must name a real parameter and its extreme values must be valid there.

    Only errors about this parameter itself are rejected: a value that clashes with another
    parameter (d_model vs n_heads) may be fine in combination, so such a trial fails on its own.
    """
    path = param_path(arch, name, where)
    base: dict[str, Any] = {"model": {"arch": arch}}
    if name in _OPTIMIZER_SETTINGS:  # checked on an optimizer that takes it
        base["train"] = {"optimizer": {"kind": next(k for k in OPTIMIZER_KINDS if name in OPTIMIZER_FIELDS[k])}}
    for value in grid_values(dist, 3 if dist["type"] != "categorical" else 1000):
        try:
            validate(base, [f"{path}={json.dumps(value)}"])
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
    for index, name in enumerate(spec.scale.models):
        if get_arch(name, where=f"scale.models.{index}").sizing is None:
            raise SpecError(f"scale.models.{index}", f"{name} declares no width/depth, so it cannot be sized")
    for model, params in spec.search.space.items():
        get_arch(model, where=f"search.space.{model}")
        for name, dist in params.items():
            check_space(model, name, dist.as_dist(), where=f"search.space.{model}.{name}")
        space = space_for(spec, model)  # the optimizers and their conditions fit together
        for name, dist in space.items():
            unknown = sorted(set(dist.get("when", {})) - set(space))
            if unknown:
                raise SpecError(f"search.space.{model}.{name}.when", f"names {', '.join(unknown)}, "
                                "which is not searched")
