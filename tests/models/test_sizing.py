"""``--match-params``: sizing every registered architecture to a non-embedding parameter count.

Parametrized over ``arch_names()``, so a newly registered architecture is covered automatically.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmbench.errors import SpecError
from lmbench.models import arch_names, build_model, get_arch, resolve_config
from lmbench.models.sizing import SizingError, count_params, match_params

V = 300
ARCHS = arch_names()
TARGETS = [50_000, 200_000, 1_000_000]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fields(arch: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_arch(arch).config_cls)}


def _real_counts(arch: str, overrides: dict, preset: str = "default") -> dict[str, int]:
    """Counted here, not by ``num_params()``: every distinct tensor of a real model once (tied
    weights share storage); embedding = the tensors with a vocabulary-sized dimension (token
    table, output head and its bias) and the position tables."""
    torch.manual_seed(0)
    model = build_model(arch, V, preset, overrides)
    seen, total, embedding = set(), 0, 0
    for name, tensor in model.named_parameters(remove_duplicate=False):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel()
        if V in tensor.shape or "pos_emb" in name:
            embedding += tensor.numel()
    return {"embedding": embedding, "non_embedding": total - embedding, "total": total}


def _check(arch, preset, overrides, target, tolerance=0.05):
    new, counts = match_params(arch, V, preset, overrides, target, tolerance)
    assert abs(counts["non_embedding"] - target) <= tolerance * target, (new, counts)
    cfg = resolve_config(arch, preset, new)  # the returned overrides are valid
    assert _real_counts(arch, new, preset) == counts  # and build exactly the reported model
    return new, counts, cfg


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("arch", ARCHS)
def test_match_within_tolerance_keeping_depth_when_possible(arch, target):
    new, _, cfg = _check(arch, "default", {}, target)
    depth0 = resolve_config(arch, "default").n_layers
    if cfg.n_layers == depth0:
        assert "n_layers" not in new
    else:
        # (attention models at 50k: the width moves in steps of n_heads = 6, too coarse there)
        # the depth may only change when no valid width at the original depth fits: check all
        closest = min(
            abs(c - target) for c in _counts_by_width(arch, {"n_layers": depth0}, 4 * cfg.d_model)
        )
        assert closest > 0.05 * target
        assert new["n_layers"] == cfg.n_layers
    if "d_embed" in _fields(arch):
        assert new["d_embed"] == new["d_model"]


@pytest.mark.parametrize("arch", ARCHS)
def test_match_keeps_a_user_depth_and_other_fields(arch):
    user = {"n_layers": 3, "dropout": 0.2, "d_model": 8}  # d_model: matching wins
    new, _, cfg = _check(arch, "default", user, 500_000)
    assert cfg.n_layers == 3 and cfg.dropout == 0.2
    assert new["d_model"] != 8
    assert {k: v for k, v in new.items() if k not in ("d_model", "d_embed")} == {
        "n_layers": 3,
        "dropout": 0.2,
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_depth_changes_when_no_width_fits(arch):
    # the narrowest valid width at depth 1 costs about half of what it costs at the preset's 2
    # layers, so no width at depth 2 gets within 5%: matching must drop to one layer
    assert resolve_config(arch, "default").n_layers == 2
    follow = "d_embed" in _fields(arch)
    w0 = next(
        w
        for w in range(1, 1000)
        if _valid(arch, {"n_layers": 1, "d_model": w, **({"d_embed": w} if follow else {})})
    )
    one = {"n_layers": 1, "d_model": w0, **({"d_embed": w0} if follow else {})}
    target = count_params(arch, V, "default", one)["non_embedding"]
    new, counts, cfg = _check(arch, "default", {}, target)
    assert cfg.n_layers == 1 and new["n_layers"] == 1
    assert counts["non_embedding"] == target


def _counts_by_width(arch: str, base: dict, max_width: int) -> list[int]:
    """Non-embedding counts of every valid width up to ``max_width`` (brute force)."""
    follow = "d_embed" in _fields(arch)
    out = []
    for w in range(1, max_width + 1):
        ovr = {**base, "d_model": w, **({"d_embed": w} if follow else {})}
        if _valid(arch, ovr):
            out.append(count_params(arch, V, "default", ovr)["non_embedding"])
    return out


def _valid(arch: str, overrides: dict) -> bool:
    try:
        resolve_config(arch, "default", overrides)
    except SpecError:
        return False
    return True


@pytest.mark.parametrize("arch", ARCHS)
def test_impossible_target_raises(arch):
    with pytest.raises(SizingError) as info:
        match_params(arch, V, "default", {}, 10)
    assert info.value.where == "--match-params"
    assert isinstance(info.value, SpecError)  # the CLI prints one line and exits 2
    assert "10" in info.value.reason


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, "100"])
def test_bad_target(bad):
    with pytest.raises(SizingError, match="--match-params"):
        match_params(ARCHS[0], V, "default", {}, bad)


def test_other_invalid_overrides_are_reported_as_such():
    with pytest.raises(SpecError) as info:
        match_params(ARCHS[0], V, "default", {"dropout": 2.0}, 100_000)
    assert not isinstance(info.value, SizingError)
    assert info.value.where == "model.config.dropout"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("preset", ["small", "default", "large"])
def test_count_params_equals_real_build(arch, preset):
    assert count_params(arch, V, preset, {}) == _real_counts(arch, {}, preset)
    untied = {"tie_weights": False} if "tie_weights" in _fields(arch) else {}
    assert count_params(arch, V, preset, untied) == _real_counts(arch, untied, preset)


def test_count_params_is_cheap_for_huge_configs():
    counts = count_params("gpt", 50_000, "default", {"d_model": 8196, "n_layers": 48})
    assert counts["non_embedding"] > 30_000_000_000


def test_count_params_returns_a_copy():
    a = count_params("gpt", V, "default", {})
    a["total"] = -1
    assert count_params("gpt", V, "default", {})["total"] != -1


# ---------------------------------------------------------------------------------------------
# architecture-specific validity: the width moves in steps that keep the config valid


def test_rope_width_is_a_multiple_of_twice_the_heads():
    new, _, cfg = _check("gpt", "default", {"positions": "rope", "n_heads": 5}, 300_000)
    assert cfg.d_model % 10 == 0 and cfg.n_heads == 5
    assert cfg.positions == "rope"


@pytest.mark.parametrize("arch", [a for a in ARCHS if "n_heads" in _fields(a)])
def test_width_is_a_multiple_of_the_heads(arch):
    new, _, cfg = _check(arch, "default", {"n_heads": 7}, 400_000)
    assert cfg.d_model % 7 == 0 and cfg.n_heads == 7


@pytest.mark.parametrize("arch", [a for a in ARCHS if "d_embed" in _fields(a)])
def test_user_fixed_d_embed_is_kept(arch):
    new, _, cfg = _check(arch, "default", {"d_embed": 64}, 300_000)
    assert new["d_embed"] == 64 and cfg.d_embed == 64


@pytest.mark.parametrize("arch", [a for a in ARCHS if "d_ff" in _fields(a)])
def test_user_fixed_d_ff_is_kept(arch):
    new, _, cfg = _check(arch, "default", {"d_ff": 100}, 300_000)
    assert cfg.d_ff == 100
    new, _, cfg = _check(arch, "default", {}, 300_000)
    assert cfg.d_ff == 0 and "d_ff" not in new  # stays at "0 = 4 * d_model"


def test_tolerance_is_honoured():
    new, counts = match_params("rnn", V, "default", {}, 123_457, tolerance=0.001)
    assert abs(counts["non_embedding"] - 123_457) <= 124
