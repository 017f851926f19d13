"""Specs as plain data: YAML files, ``--set`` overrides, validation, and the forms specs are stored in.

A spec is validated completely (including the model config against the architecture registry and
the data/model context limits) before any file, study or MLflow run is created; every problem
becomes a :class:`SpecError` naming the dotted key path."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lmbench.config.spec import OPTIMIZER_FIELDS, OPTIMIZER_KINDS, ExperimentSpec
from lmbench.errors import SpecError


def _parts(err: dict[str, Any]) -> tuple[list[str], str | None]:
    """The key path of an error, and the optimizer kind when the error is inside that section.

    Pydantic puts the tag of a discriminated union in the path (``train.optimizer.sgd.momentum``);
    the user wrote ``train.optimizer.momentum``, so the tag is taken out and returned apart."""
    parts = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    for index in range(1, len(parts)):
        if parts[index - 1] == "optimizer" and parts[index] in OPTIMIZER_KINDS:
            return parts[:index] + parts[index + 1:], parts[index]
    return parts, None


def _first_error(exc: ValidationError, prefix: str = "") -> SpecError:
    err = exc.errors()[0]
    parts, kind = _parts(err)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        if kind is not None:
            msg = f"not a setting of the {kind} optimizer (it takes: {', '.join(OPTIMIZER_FIELDS[kind])})"
    elif err["type"] == "union_tag_invalid":
        parts.append("kind")
        msg = f"unknown optimizer {err['ctx']['tag']!r} (choose from {', '.join(OPTIMIZER_KINDS)})"
    elif err["type"] == "union_tag_not_found":
        parts.append("kind")
        msg = f"missing (choose from {', '.join(OPTIMIZER_KINDS)})"
    where = ".".join(([prefix] if prefix else []) + parts) or (prefix or "spec")
    return SpecError(where, msg)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a spec file with ``yaml.safe_load``; a missing file or bad YAML is a SpecError."""
    spec_path = Path(path)
    if not spec_path.is_file():
        raise SpecError(str(spec_path), "spec file not found")
    try:
        raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise SpecError(str(spec_path), f"not valid YAML ({str(error).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(str(spec_path), "the spec must be a YAML mapping")
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (so 3, 1e-3, true, [1,2] are typed)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise SpecError("--set", f"expected key.path=value, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for depth, part in enumerate(path[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(".".join(path[: depth + 1]), "is not a mapping, cannot set a key inside it")
        node = nxt
    node[path[-1]] = value


def validate(raw: dict[str, Any] | None = None, overrides: list[str] | None = None) -> ExperimentSpec:
    """A raw mapping plus ``--set`` overrides, validated by the models and the model registry
    (not yet the search spaces: :func:`lmbench.config.load.build_spec` adds those)."""
    raw = copy.deepcopy(raw or {})
    for text in overrides or []:
        path, value = parse_override(text)
        apply_override(raw, path, value)
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as error:
        raise _first_error(error) from None
    check_model(spec)
    return spec


def check_model(spec: ExperimentSpec) -> None:
    """Validate the model section against the registry and the data's context length."""
    from lmbench.models import resolve_config  # imports torch; only when a spec is really built

    cfg = resolve_config(spec.model.arch, spec.model.preset, spec.model.config)
    max_ctx = getattr(cfg, "max_len", None)
    if max_ctx is not None and spec.data.seq_len > max_ctx:
        raise SpecError(
            "data.seq_len",
            f"{spec.data.seq_len} is longer than {spec.model.arch}'s maximum context "
            f"{max_ctx} (raise model.config.max_len or lower data.seq_len)",
        )


def dump_raw(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as plain data that ``build_spec`` accepts again (aliases such as ``float``).

    Only the values that were set (in the YAML, by an option, a recipe or a scaled budget) are
    written, with the name, the kind and every section present: a value left to its default stays so wherever the spec
    travels (studies, worker processes, ``spec.yaml``, checkpoints), so an architecture's recipe
    (:func:`lmbench.config.load.model_spec`) can still tell it from a value the user chose."""
    raw = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    out: dict[str, Any] = {"name": spec.name, "kind": spec.kind}  # what the spec is, always shown first
    for name in ExperimentSpec.model_fields:
        if isinstance(getattr(spec, name), BaseModel):
            out[name] = raw.get(name, {})
        elif name in raw:
            out[name] = raw[name]
    return out


def is_set(section: BaseModel, name: str) -> bool:
    """Whether ``name`` of a spec section was given (in the YAML, an option or a recipe), not defaulted."""
    return name in section.model_fields_set


def resolved_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as plain data, with the model config fully resolved (preset + overrides) and the
    batch order the architecture gets (``auto`` resolved)."""
    from dataclasses import asdict

    from lmbench.data.batching import resolve_order
    from lmbench.models import get_arch, resolve_config

    resolved = spec.model_dump(mode="json")
    resolved["model"]["config"] = asdict(resolve_config(spec.model.arch, spec.model.preset, spec.model.config))
    resolved["data"]["order"] = resolve_order(spec.data.order, get_arch(spec.model.arch).stateful)
    return resolved


def spec_hash(spec: ExperimentSpec) -> str:
    blob = json.dumps(resolved_dict(spec), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (MLflow params)."""
    out: dict[str, Any] = {}
    for name, value in mapping.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, dict) and value:
            out.update(flatten(value, key))
        else:
            out[key] = value
    return out


def to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(resolved_dict(spec), sort_keys=False)
