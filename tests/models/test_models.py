"""Contract tests for every registered architecture, plus registry / config resolution tests.

The contract tests are parametrized over ``arch_names()``, so a newly registered architecture is
tested automatically.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from lmbench.errors import SpecError
from lmbench.models import (
    PRESETS,
    LanguageModel,
    arch_names,
    build_model,
    describe_archs,
    get_arch,
    register,
    resolve_config,
)
from lmbench.models.base import ModelConfig

V = 50
ARCHS = arch_names()
STATEFUL = [a for a in ARCHS if get_arch(a).stateful]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small(arch: str, seed: int = 0, **overrides) -> LanguageModel:
    torch.manual_seed(seed)
    return build_model(arch, V, "small", overrides or None)


def _batch(b: int = 4, t: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (b, t), generator=g)


def _loss(model: LanguageModel, x: torch.Tensor) -> torch.Tensor:
    logits, _ = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_has_the_five_architectures_in_order():
    assert ARCHS[:5] == ["rnn", "lstm", "gru", "transformer", "gpt"]
    assert STATEFUL[:3] == ["rnn", "lstm", "gru"]
    for name in ARCHS:
        info = get_arch(name)
        assert info.name == name
        assert dataclasses.is_dataclass(info.config_cls)
        assert set(PRESETS) <= set(info.presets)
        assert info.description
        assert issubclass(info.model_cls, LanguageModel)
        assert info.model_cls.arch == name


def test_unknown_arch_is_a_spec_error():
    with pytest.raises(SpecError) as e:
        get_arch("mamba")
    assert e.value.where == "model.arch"
    assert "rnn, lstm, gru, transformer, gpt" in e.value.reason
    with pytest.raises(SpecError) as e:
        build_model("mamba", V)
    assert e.value.where == "model.arch"


def test_register_rejects_duplicates_and_non_models():
    cfg = get_arch("gpt").config_cls
    presets = {p: {} for p in PRESETS}
    with pytest.raises(ValueError, match="already registered"):
        register("gpt", config=cfg, presets=presets, description="x")(
            type("X", (LanguageModel,), {})
        )
    with pytest.raises(TypeError):
        register("newarch", config=cfg, presets=presets, description="x")(object)
    with pytest.raises(ValueError, match="unknown fields"):
        register("newarch", config=cfg, presets={**presets, "small": {"nope": 1}}, description="x")(
            type("Y", (LanguageModel,), {})
        )
    assert "newarch" not in arch_names()


def test_describe_archs():
    rows = describe_archs()
    assert [r["name"] for r in rows] == ARCHS
    for r in rows:
        names = [f["name"] for f in r["fields"]]
        assert "d_model" in names and "n_layers" in names and "dropout" in names
        assert set(r["presets"]) >= set(PRESETS)
        assert isinstance(r["stateful"], bool)
        for f in r["fields"]:
            assert f["type"] in {"int", "float", "bool", "str"}


def test_search_spaces_only_name_config_fields_and_every_point_is_valid():
    for name in ARCHS:
        info = get_arch(name)
        fields = {f.name for f in dataclasses.fields(info.config_cls)}
        axes = {}
        for key, dist in info.search_space.items():
            assert key in fields
            assert dist["type"] in {"int", "float", "categorical"}
            axes[key] = (
                dist["choices"] if dist["type"] == "categorical" else [dist["low"], dist["high"]]
            )
        for point in itertools.product(*axes.values()):  # sampled jointly on top of any preset
            for preset in PRESETS:
                resolve_config(name, preset, dict(zip(axes, point, strict=True)))


# ---------------------------------------------------------------------------------------------
# contract


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_state_and_context(arch):
    model = _small(arch)
    x = _batch(3, 16)
    logits, state = model(x)
    assert logits.shape == (3, 16, V)
    assert logits.dtype == torch.float32
    assert model.arch == arch
    assert model.vocab_size == V
    assert isinstance(model.config, get_arch(arch).config_cls)
    if get_arch(arch).stateful:
        assert state is not None
        assert model.max_context is None
        logits2, _ = model(x, state)  # accepts its own state back
        assert logits2.shape == (3, 16, V)
    else:
        assert state is None
        assert model.max_context == model.config.max_len
        with pytest.raises(ValueError, match="maximum context"):
            model(torch.zeros(1, model.max_context + 1, dtype=torch.long))


@pytest.mark.parametrize("arch", ARCHS)
def test_initial_loss_is_near_uniform(arch):
    model = _small(arch).eval()
    with torch.no_grad():
        loss = _loss(model, _batch(8, 33)).item()
    assert abs(loss - math.log(V)) < 0.1 * math.log(V)


@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_one_batch(arch):
    model = _small(arch).train()
    x = _batch(4, 33)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = _loss(model, x).item()
    for _ in range(300):
        loss = _loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if loss.item() < 0.1 * first:
            break
    assert loss.item() < 0.1 * first, f"{arch} did not overfit: {first:.3f} -> {loss.item():.3f}"


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(arch):
    model = _small(arch).eval()
    x = _batch(2, 20)
    y = x.clone()
    y[:, 12] = (y[:, 12] + 1) % V
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


@pytest.mark.parametrize("arch", STATEFUL)
def test_state_carries_across_calls(arch):
    model = _small(arch, n_layers=2).eval()
    x = _batch(3, 24)
    with torch.no_grad():
        whole, _ = model(x)
        first, state = model(x[:, :12])
        second, _ = model(x[:, 12:], state)
        reset, _ = model(x[:, 12:])
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(reset, whole[:, 12:], atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_detach_state(arch):
    model = _small(arch)
    _, state = model(_batch(2, 8))
    detached = model.detach_state(state)
    assert model.detach_state(None) is None
    if state is None:
        assert detached is None
        return
    flat = list(detached) if isinstance(detached, tuple) else [detached]
    orig = list(state) if isinstance(state, tuple) else [state]
    assert type(detached) is type(state)
    assert any(s.requires_grad for s in orig)
    for d, s in zip(flat, orig, strict=True):
        assert not d.requires_grad and d.shape == s.shape
        assert torch.equal(d, s)
    # truncated BPTT: the next step's graph does not reach back into the previous one
    for s in orig:
        s.retain_grad()
    logits, _ = model(_batch(2, 8, seed=3), detached)
    logits.sum().backward()
    assert all(s.grad is None for s in orig), "gradients flowed into the carried state"
    # the control: without detaching, they do
    logits, _ = model(_batch(2, 8, seed=3), state)
    logits.sum().backward()
    assert all(s.grad is not None for s in orig)


@pytest.mark.parametrize("arch", ARCHS)
def test_num_params_and_tying(arch):
    tied = _small(arch, tie_weights=True)
    untied = _small(arch, tie_weights=False)
    for m in (tied, untied):
        n = m.num_params()
        unique = {id(p): p.numel() for p in m.parameters()}
        assert n["total"] == sum(unique.values())
        assert n["embedding"] + n["non_embedding"] == n["total"]
        assert n["embedding"] > 0 and n["non_embedding"] > 0
    d_out = untied.head.weight.shape[1]
    assert untied.num_params()["embedding"] - tied.num_params()["embedding"] == V * d_out
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.head.weight is not untied.tok_emb.weight
    # non-embedding params do not depend on the vocabulary
    torch.manual_seed(0)
    big = build_model(arch, 1000, "small", {"tie_weights": False})
    assert big.num_params()["non_embedding"] == untied.num_params()["non_embedding"]


@pytest.mark.parametrize("arch", ARCHS)
def test_flops_per_token(arch):
    model = _small(arch)
    f64, f128 = model.flops_per_token(64), model.flops_per_token(128)
    assert f64 >= 6 * model.num_params()["non_embedding"] * 0.9
    c = model.config
    if model.attention_layers:
        # one term per attention op of a layer (seq2seq: encoder self, decoder self, cross)
        assert f128 - f64 == pytest.approx(12 * model.attention_per_layer * c.n_layers * 64 * c.d_model)
    else:
        assert f128 == f64


def test_gpt_flops_match_palm_formula():
    m = _small("gpt")
    c = m.config
    d, L, ff = c.d_model, c.n_layers, c.ffn_dim
    matmul = L * (4 * d * d + 2 * d * ff) + d * V  # qkv+proj, mlp, head
    assert m.flops_per_token(32) == 6 * matmul + 12 * L * 32 * d


@pytest.mark.parametrize("arch", ARCHS)
def test_seed_determinism(arch):
    a, b = _small(arch, seed=7), _small(arch, seed=7)
    c = _small(arch, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("arch", ARCHS)
def test_dropout_train_vs_eval(arch):
    model = _small(arch, dropout=0.5, n_layers=2)
    x = _batch(2, 16)
    model.eval()
    with torch.no_grad():
        e1, _ = model(x)
        e2, _ = model(x)
    torch.testing.assert_close(e1, e2)
    model.train()
    with torch.no_grad():
        t1, _ = model(x)
    assert not torch.allclose(t1, e1)


@pytest.mark.parametrize("arch", ARCHS)
def test_cpu_bf16_autocast(arch):
    model = _small(arch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, state = model(_batch(2, 8))
        logits, _ = model(_batch(2, 8, seed=2), model.detach_state(state))
    assert logits.shape == (2, 8, V) and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()


# ---------------------------------------------------------------------------------------------
# architecture specifics


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_gpt_positions(positions):
    model = _small("gpt", positions=positions, max_len=64).eval()
    assert model.max_context == 64
    x = _batch(2, 40)  # shorter than max_len
    with torch.no_grad():
        logits, state = model(x)
        full, _ = model(_batch(1, 64))
    assert logits.shape == (2, 40, V) and state is None and full.shape == (1, 64, V)
    has_table = any(n.startswith("pos_emb") for n, _ in model.named_parameters())
    assert has_table == (positions == "learned")
    assert not any("rope" in k or "pos_table" in k for k in model.state_dict())  # non-persistent
    # positions matter: a 1-layer causal model without positions would be invariant to
    # swapping two earlier tokens at the last position
    one = _small("gpt", positions=positions, n_layers=1).eval()
    with torch.no_grad():
        a, _ = one(torch.tensor([[3, 7, 9, 11]]))
        b, _ = one(torch.tensor([[7, 3, 9, 11]]))
    assert not torch.allclose(a[0, -1], b[0, -1])


def test_gpt_bias_and_residual_init():
    nobias = _small("gpt", bias=False)
    withbias = _small("gpt", bias=True)
    assert not any(n.endswith("bias") for n, _ in nobias.named_parameters())
    assert any(n.endswith("bias") for n, _ in withbias.named_parameters())
    torch.manual_seed(0)
    m = build_model("gpt", V, "default", {"n_layers": 8, "d_model": 256, "n_heads": 4})
    proj = m.blocks[0].attn.c_proj.weight.std().item()
    fc = m.blocks[0].mlp.c_fc.weight.std().item()
    assert proj == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert fc == pytest.approx(0.02, rel=0.1)


def test_recurrent_projection_when_sizes_differ():
    m = _small("lstm", d_embed=32, d_model=64, tie_weights=True)
    assert m.proj is not None and m.head.weight is m.tok_emb.weight
    logits, (h, c) = m(_batch(2, 8))
    assert logits.shape == (2, 8, V) and h.shape == c.shape == (1, 2, 64)
    assert _small("lstm", d_embed=32, d_model=64, tie_weights=False).proj is None
    # LSTM forget-gate bias starts at 1
    assert torch.all(m.rnn.bias_ih_l0[64:128] == 1.0)


def test_d_ff_zero_means_four_times_d_model():
    for arch in ("transformer", "gpt"):
        assert resolve_config(arch, "small", {}).ffn_dim == 4 * 64
        assert resolve_config(arch, "small", {"d_ff": 100}).ffn_dim == 100


# ---------------------------------------------------------------------------------------------
# config resolution


def test_presets_and_overrides_apply():
    cfg_cls = get_arch("gpt").config_cls
    defaults = cfg_cls()
    small = resolve_config("gpt", "small", {})
    assert small.d_model == get_arch("gpt").presets["small"]["d_model"] != defaults.d_model
    assert small.max_len == 256
    over = resolve_config("gpt", "small", {"d_model": 96, "n_heads": 3, "positions": "rope"})
    assert (over.d_model, over.n_heads, over.positions) == (96, 3, "rope")
    assert over.n_layers == small.n_layers
    assert resolve_config("gpt", "default", None) == resolve_config("gpt", "default", {})
    # ints for floats are converted; so are float strings (PyYAML reads `1e-3` as a string)
    cfg = resolve_config("lstm", "default", {"dropout": 0})
    assert cfg.dropout == 0.0 and isinstance(cfg.dropout, float)
    assert resolve_config("lstm", "default", {"dropout": "1e-1"}).dropout == 0.1
    # the resolved config is plain data (hashed and logged by spec.py)
    assert dataclasses.asdict(cfg)["d_model"] == cfg.d_model


def test_build_model_overrides_reach_the_model():
    torch.manual_seed(0)
    m = build_model("transformer", V, "small", {"d_model": 32, "n_heads": 2, "n_layers": 1})
    assert m.config.d_model == 32 and len(m.encoder.layers) == 1
    assert m.tok_emb.weight.shape == (V, 32)


BAD = [
    ("gpt", {"d_modle": 64}, "model.config.d_modle"),
    ("lstm", {"n_heads": 2}, "model.config.n_heads"),
    ("gpt", {"d_model": "abc"}, "model.config.d_model"),
    ("gpt", {"d_model": 64.0}, "model.config.d_model"),
    ("gpt", {"n_layers": 2.5}, "model.config.n_layers"),
    ("gpt", {"n_layers": True}, "model.config.n_layers"),
    ("gpt", {"dropout": "abc"}, "model.config.dropout"),
    ("gpt", {"dropout": True}, "model.config.dropout"),
    ("gpt", {"dropout": None}, "model.config.dropout"),
    ("gpt", {"tie_weights": "yes"}, "model.config.tie_weights"),
    ("gpt", {"tie_weights": 1}, "model.config.tie_weights"),
    ("gpt", {"positions": 3}, "model.config.positions"),
    ("gpt", {"d_model": 0}, "model.config.d_model"),
    ("gpt", {"d_model": -8}, "model.config.d_model"),
    ("gpt", {"n_layers": 0}, "model.config.n_layers"),
    ("gpt", {"n_heads": 0}, "model.config.n_heads"),
    ("gpt", {"max_len": 0}, "model.config.max_len"),
    ("gpt", {"d_ff": -1}, "model.config.d_ff"),
    ("gpt", {"dropout": 1.0}, "model.config.dropout"),
    ("gpt", {"dropout": -0.1}, "model.config.dropout"),
    ("gpt", {"dropout": float("nan")}, "model.config.dropout"),
    ("gpt", {"d_model": 64, "n_heads": 5}, "model.config.n_heads"),
    ("gpt", {"positions": "alibi"}, "model.config.positions"),
    ("gpt", {"d_model": 12, "n_heads": 4, "positions": "rope"}, "model.config.positions"),
    ("transformer", {"d_model": 64, "n_heads": 3}, "model.config.n_heads"),
    ("transformer", {"positions": "rope"}, "model.config.positions"),
    ("transformer", {"dropout": 2}, "model.config.dropout"),
    ("rnn", {"d_model": 0}, "model.config.d_model"),
    ("rnn", {"d_embed": 0}, "model.config.d_embed"),
    ("gru", {"n_layers": 0}, "model.config.n_layers"),
    ("lstm", {"dropout": 1}, "model.config.dropout"),
    ("lstm", {"max_len": 128}, "model.config.max_len"),
    ("nope", {}, "model.arch"),
]


@pytest.mark.parametrize(("arch", "overrides", "where"), BAD)
def test_bad_overrides_name_the_key(arch, overrides, where):
    with pytest.raises(SpecError) as e:
        resolve_config(arch, "default", overrides)
    assert e.value.where == where
    assert e.value.reason


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(SpecError) as e:
        resolve_config("gpt", "small", {"d_modle": 64})
    assert "unknown parameter for gpt" in e.value.reason
    assert "d_model" in e.value.reason and "positions" in e.value.reason


def test_unknown_preset():
    with pytest.raises(SpecError) as e:
        resolve_config("gpt", "huge", {})
    assert e.value.where == "model.preset"


def test_every_preset_is_valid_and_builds():
    for arch in ARCHS:
        for preset in PRESETS:
            cfg = resolve_config(arch, preset, {})
            cfg.validate()
            assert isinstance(cfg, ModelConfig)
            if getattr(cfg, "max_len", None) is not None:
                assert cfg.max_len == 256


def test_preset_sizes_are_ordered():
    for arch in ARCHS:
        sizes = []
        for preset in ("small", "default", "large"):
            torch.manual_seed(0)
            sizes.append(build_model(arch, V, preset).num_params()["non_embedding"])
        assert sizes[0] < 200_000 and sizes == sorted(sizes) and len(set(sizes)) == 3
