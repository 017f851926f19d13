"""Shared fixtures: isolated working dirs, caches and MLflow stores; the shared data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Under pytest-xdist (``make test``) two test processes share the cores: one torch thread each
# (and in the lmbench processes they start), or their intra-op threads fight over the CPU.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_CI = bool(os.environ.get("LMBENCH_CI"))


def pytest_collection_modifyitems(config, items):
    """Modules with slow tests run first. ``make test`` hands whole modules to two workers
    (``--dist loadfile``) in collection order: started first, the long multi-process modules
    (tests/tuning/ sorts last) overlap with each other and the quick modules fill in around them,
    instead of one long module running alone at the end. The order within a module is kept."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: False (slow) first


def need(condition: bool, reason: str) -> None:
    """Skip when a resource is absent, except under CI where it is required."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """Every test runs in its own working directory with private caches and no tracking env."""
    work = tmp_path_factory.mktemp("work")
    monkeypatch.chdir(work)
    monkeypatch.setenv("LMBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "token-cache"))
    monkeypatch.setenv("LMBENCH_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return work


@pytest.fixture
def shakespeare(monkeypatch, tmp_path_factory) -> Path:
    """Tiny Shakespeare from ../shared/data, placed in the data cache (tests never download)."""
    src = SHARED_DATA / "tinyshakespeare" / "input.txt"
    need(src.is_file(), f"{src} is missing")
    dest = Path(os.environ["LMBENCH_DATA_DIR"]) / "tinyshakespeare" / "input.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        shutil.copy(src, dest)
    return dest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Real builds of small models gain nothing from intra-op threads, and two threads per test
    process fight over the 2 cores of a CI machine: modules of model tests use one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



@pytest.fixture(scope="session", autouse=True)
def one_thread_per_xdist_worker():
    """The test process itself, too (torch may have read OMP_NUM_THREADS before we set it)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    yield
