"""Command-line options as spec overrides: every option becomes a ``--set key=value``, so options
and spec files are validated by the same models and a bad option names its spec key."""

from __future__ import annotations

import json
from typing import Any

from lmbench.errors import SpecError

# The --quick profile: a few seconds on a laptop CPU, but still a real run end to end.
QUICK = [
    "model.preset=small", "train.budget={steps: 40}", "search.budget=null", "train.eval_interval=20",
    "train.eval_tokens=2000", "train.log_interval=5", "train.batch_size=8", "data.seq_len=32", "data.size=20000",
]
# The scale --quick profile on top of QUICK: three tiny budgets, three sizes, two seeds, ladders
# centred on larger models than the default (fewer tokens: seconds per run)
SCALE_QUICK = ["scale.compute=[1.0e+9, 2.0e+9, 4.0e+9]", "scale.sizes=3", "scale.seeds=2",
               "scale.tokens_per_param=20"]
# option name -> the spec key it sets
OPTION_KEYS = {"model": "model.arch", "data": "data.source", "seed": "train.seed", "device": "train.device",
               "tracking_uri": "tracking.tracking_uri", "trials": "search.trials", "workers": "search.workers",
               "devices": "search.devices", "storage": "search.storage"}


def yaml_value(value: Any) -> str:
    """A value as YAML text; strings as JSON strings (valid YAML) so odd paths stay strings."""
    return json.dumps(value) if isinstance(value, str) else str(value)


def overrides(quick: bool = False, sets: list[str] | None = None, **options: Any) -> list[str]:
    """The overrides of a command: the --quick profile, then the options, then --set values
    (last wins). ``steps``/``tokens`` set the training budget; None means "not given"."""
    out = list(QUICK) if quick else []
    for name, value in options.items():
        if value is None:
            continue
        if name in ("steps", "tokens"):
            out.append(f"train.budget={{{name}: {value}}}")
        else:
            out.append(f"{OPTION_KEYS[name]}={yaml_value(value)}")
    return out + list(sets or [])


def models_override(models: str | None) -> list[str]:
    """``--models rnn,lstm`` as ``compare.models``; an empty value reaches the spec's own check."""
    if models is None:
        return []
    if not models.strip():
        return [f"compare.models={yaml_value(models)}"]
    return [f"compare.models={[m.strip() for m in models.split(',')]}"]


def section_overrides(section: str, **values: Any) -> list[str]:
    """``section.key=value`` for every given value (e.g. compare.seeds, ablate.baseline)."""
    return [f"{section}.{key}={yaml_value(value)}" for key, value in values.items() if value is not None]


def ablate_overrides(params: list[str] | None, values: list[str] | None) -> list[str]:
    """``--param`` (repeatable) and ``--values``: ``v1,v2`` for a single --param, else ``NAME=v1,v2``."""
    out = [f"ablate.params={[p.strip() for p in params]}"] if params else []
    for text in values or []:
        name, sep, listed = text.partition("=")
        if not sep:
            if not params or len(params) != 1:
                raise SpecError("--values", "with several --param, write --values NAME=v1,v2")
            name, listed = params[0], text
        out.append(f"ablate.values.{name.strip()}=[{listed}]")
    return out


def scale_overrides(quick: bool = False, models: str | None = None, compute: str | None = None,
                    **values: Any) -> list[str]:
    """``lmbench scale``'s options: kind=scale, the quick profile, ``--models`` and ``--compute``
    as lists (``1e12,3e12``: numbers as written, checked by the spec), then the other values."""
    out = ["kind=scale", *(SCALE_QUICK if quick else [])]
    if models is not None:
        out.append(f"scale.models={[m.strip() for m in models.split(',')] if models.strip() else []}")
    if compute is not None:
        listed = [c.strip() for c in compute.split(",")]
        out.append(f"scale.compute=[{', '.join(json.dumps(c) for c in listed)}]" if compute.strip()
                   else "scale.compute=[]")
    return out + section_overrides("scale", **values)
