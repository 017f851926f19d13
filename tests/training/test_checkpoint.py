"""Checkpoints: atomic writes, safe loading, pointer fallbacks."""

import os
import pickle

import pytest
import torch

from lmbench.training import checkpoint


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.out = torch.nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight  # tied: safetensors must cope with shared tensors


def test_roundtrip_with_tied_weights_and_state(tmp_path):
    torch.manual_seed(0)
    m = Tiny()
    state = {"step": 7, "rng": torch.get_rng_state(), "carry": (torch.ones(2), torch.zeros(2)), "x": [1.5, None]}
    checkpoint.save(tmp_path, "last", m, state, step=7)
    d = checkpoint.locate(tmp_path, "last")
    m2 = Tiny()
    checkpoint.load_weights(d, m2)
    assert torch.equal(m2.emb.weight, m.emb.weight) and m2.out.weight is m2.emb.weight
    s = checkpoint.load_state(d)
    assert s["step"] == 7 and torch.equal(s["carry"][0], torch.ones(2))


def test_old_checkpoints_are_collected_but_best_is_kept(tmp_path):
    m = Tiny()
    checkpoint.save(tmp_path, "best", m, {"step": 1}, step=1)
    for step in (2, 3, 4):
        checkpoint.save(tmp_path, "last", m, {"step": step}, step=step)
    dirs = sorted(p.name for p in tmp_path.glob("ckpt-*"))
    assert len(dirs) == 2
    assert checkpoint.load_state(checkpoint.locate(tmp_path, "best"))["step"] == 1
    assert checkpoint.load_state(checkpoint.locate(tmp_path, "last"))["step"] == 4


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    m = Tiny()
    checkpoint.save(tmp_path, "last", m, {"step": 1}, step=1)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", boom)  # the crash hits mid-way through the write
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, "last", m, {"step": 2}, step=2)
    monkeypatch.undo()
    assert checkpoint.load_state(checkpoint.locate(tmp_path, "last"))["step"] == 1
    assert not list(tmp_path.glob(".tmp-*")), "the partial write must be cleaned up"


def test_crash_in_a_killed_process_leaves_previous_checkpoint(tmp_path):
    """A process SIGKILLed while saving: the pointer still names a complete checkpoint."""
    import subprocess
    import sys

    m = Tiny()
    checkpoint.save(tmp_path, "last", m, {"step": 1}, step=1)
    code = f"""
import os, torch
from lmbench.training import checkpoint
orig = torch.save
def save_then_die(obj, f, *a, **k):
    orig(obj, f, *a, **k)
    os.kill(os.getpid(), 9)  # die after the state file, before the rename and pointer update
torch.save = save_then_die
m = torch.nn.Linear(2, 2)
checkpoint.save(__import__('pathlib').Path({str(tmp_path)!r}), 'last', m, {{'step': 2}}, step=2)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -9
    assert checkpoint.load_state(checkpoint.locate(tmp_path, "last"))["step"] == 1


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint.save(tmp_path, "last", Tiny(), {"step": 1}, step=1)
    d = checkpoint.locate(tmp_path, "last")
    with open(d / checkpoint.STATE, "wb") as f:
        pickle.dump({"step": Evil()}, f)
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load_state(d)
    assert not (tmp_path / "pwned").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no complete"):
        checkpoint.locate(tmp_path, "last")
