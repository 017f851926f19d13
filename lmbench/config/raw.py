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
from pydantic import (
    ValidationError,
)

from lmbench.config.spec import ExperimentSpec
from lmbench.errors import SpecError


def _loc(err: dict[str, Any], prefix: str = "") -> str:
    parts = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    return ".".join(([prefix] if prefix else []) + parts) or (prefix or "spec")


def _first_error(exc: ValidationError, prefix: str = "") -> SpecError:
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return SpecError(_loc(err, prefix), msg)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a spec file with ``yaml.safe_load``; a missing file or bad YAML is a SpecError."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(p), "spec file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SpecError(str(p), f"not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(str(p), "the spec must be a YAML mapping")
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
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(".".join(path[: i + 1]), "is not a mapping, cannot set a key inside it")
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
    except ValidationError as e:
        raise _first_error(e) from None
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
    """The spec as plain data that ``build_spec`` accepts again (aliases such as ``float``)."""
    return spec.model_dump(mode="json", by_alias=True)


def resolved_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as plain data, with the model config fully resolved (preset + overrides)."""
    from dataclasses import asdict

    from lmbench.models import resolve_config

    d = spec.model_dump(mode="json")
    d["model"]["config"] = asdict(resolve_config(spec.model.arch, spec.model.preset, spec.model.config))
    return d


def spec_hash(spec: ExperimentSpec) -> str:
    blob = json.dumps(resolved_dict(spec), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(resolved_dict(spec), sort_keys=False)
