"""Devices, precision, seeding and determinism: the parts of a run that depend on the machine."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from lmbench.config import TrainSpec
from lmbench.errors import SpecError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full fp32
    name: str  # human-readable device name for tags

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        # pinned host memory lets the copy overlap with compute on CUDA
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]


def pick_runtime(spec: TrainSpec) -> Runtime:
    """Resolve ``device`` (auto|cpu|cuda[:N]|mps) and ``precision`` (auto = bf16 on CUDA)."""
    device = _pick_device(spec.device)
    precision = spec.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise SpecError("train.precision", "fp16 needs a CUDA device (use bf16 or fp32)")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    else:
        name = device.type
    return Runtime(device, dtype, name)


def _pick_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError("train.device", f"{requested} requested but CUDA is not available")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise SpecError("train.device", f"{requested}: only {torch.cuda.device_count()} CUDA device(s)")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise SpecError("train.device", "mps requested but not available")
    return torch.device(requested)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every RNG we use; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
