"""Checkpoints: safetensors weights + a weights-only-loadable training state, written atomically.

Layout of a checkpoint directory::

    ckpt-<step>-<uid>/model.safetensors   model weights (safetensors: no pickle, shared tensors ok)
    ckpt-<step>-<uid>/state.pt            optimizer, schedule, RNG, data position, carried state
    last.json / best.json                 pointers {"dir": "ckpt-...", "step": N, ...}

A checkpoint is first written to a temporary directory, fsynced and renamed; only then is the
pointer replaced (``os.replace`` is atomic). A crash at any moment therefore leaves the previous
pointer naming a complete checkpoint. Directories no pointer names are removed afterwards.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from lmbench.errors import UserError
from lmbench.files import write_atomic

WEIGHTS = "model.safetensors"
STATE = "state.pt"


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete or unsafe to load."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: Path, tag: str, model: torch.nn.Module, state: dict[str, Any], step: int, **info: Any) -> Path:
    """Save a checkpoint under ``root`` and point ``<tag>.json`` (e.g. last, best) at it."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        save_model(_unwrap(model), str(tmp / WEIGHTS))
        torch.save(state, tmp / STATE)
        for file_path in tmp.iterdir():
            with open(file_path, "rb") as fh:
                os.fsync(fh.fileno())
        final = root / f"ckpt-{step:09d}-{uuid.uuid4().hex[:8]}"
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(root / f"{tag}.json", json.dumps({"dir": final.name, "step": step, **info}), durable=True)
    _collect_garbage(root)
    return final


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # torch.compile wraps the module; weights belong to the original
    return getattr(model, "_orig_mod", model)


def _collect_garbage(root: Path) -> None:
    keep = {p["dir"] for p in (pointer(root, t) for t in ("last", "best")) if p}
    for ckpt_dir in root.glob("ckpt-*"):
        if ckpt_dir.name not in keep:
            shutil.rmtree(ckpt_dir, ignore_errors=True)


def pointer(root: Path, tag: str) -> dict[str, Any] | None:
    path = root / f"{tag}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def adopt(src_root: Path, dst_root: Path, tag: str = "best") -> None:
    """Copy the checkpoint ``src_root``'s ``tag`` points to into ``dst_root`` (pointer written last,
    atomically), unless ``dst_root`` already has one: a retried run takes over its predecessor's best."""
    ptr = pointer(src_root, tag)
    if ptr is None or (dst_root / f"{tag}.json").exists():
        return
    dst_root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src_root / ptr["dir"], dst_root / ptr["dir"], dirs_exist_ok=True)
    write_atomic(dst_root / f"{tag}.json", json.dumps(ptr), durable=True)


def locate(path: Path, tag: str = "last") -> Path:
    """Resolve a checkpoint root (with pointers) or a checkpoint directory to a checkpoint dir."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return path
    ptr = pointer(path, tag) or pointer(path, "best" if tag == "last" else "last")
    if ptr is None or not (path / ptr["dir"] / WEIGHTS).is_file():
        raise CheckpointError(str(path), f"no complete '{tag}' checkpoint found")
    return path / ptr["dir"]


def load_weights(ckpt_dir: Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    """Load safetensors weights into ``model`` (strict: every tensor must match)."""
    try:
        load_model(_unwrap(model), str(ckpt_dir / WEIGHTS), strict=True, device=str(device))
    except (OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(str(ckpt_dir / WEIGHTS), f"cannot load weights ({error})") from None


def load_state(ckpt_dir: Path) -> dict[str, Any]:
    """Load the training state with ``weights_only=True``: a pickle that would run code is refused."""
    path = ckpt_dir / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(str(path), "missing training state") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(str(path), f"refused: not a safe weights-only checkpoint ({str(error).splitlines()[0]})") from None
