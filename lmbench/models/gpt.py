"""``gpt``: a GPT-2 style decoder (pre-LayerNorm blocks, causal scaled-dot-product attention).

Kept as lean as nanoGPT's model: one fused qkv projection, ``F.scaled_dot_product_attention``
with ``is_causal=True``, tied embeddings, GPT-2 init (residual projections scaled by
``1/sqrt(2 * n_layers)``). Positions: ``learned`` (a table), ``sinusoidal`` (fixed, added) or
``rope`` (rotary, applied to q and k with precomputed cos/sin up to ``max_len``).

Decoding uses a key/value cache: ``model(new_tokens, cache)`` with the :class:`KVCache` from
``model.decode_state()`` attends to the cached keys and values of the earlier tokens and appends
its own, so each generated token costs one position instead of the whole context. Training
never passes a cache and gets ``None`` back, exactly as before. A cache with ``compile`` set
(``decode(..., compile=True)``) takes its one-token steps through a compiled function with
fixed shapes (:func:`_one_token_step`); where compiling fails, the eager path above serves.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmbench.models.base import LanguageModel, ModelConfig, Sizing, State, param, register
from lmbench.models.recipes import ATTENTION
from lmbench.models.transformer import ATTENTION_PRESETS, ATTENTION_SPACE

POSITIONS = ("learned", "sinusoidal", "rope")
log = logging.getLogger(__name__)


@dataclass
class GPTConfig(ModelConfig):
    d_model: int = param(192, "model width")
    n_layers: int = param(2, "decoder blocks")
    n_heads: int = param(6, "attention heads (must divide d_model)")
    d_ff: int = param(0, "MLP width; 0 means 4 * d_model")
    dropout: float = param(0.1, "dropout on embeddings, attention and residual branches")
    max_len: int = param(256, "maximum context length")
    positions: str = param("learned", "learned | sinusoidal | rope")
    tie_weights: bool = param(True, "share the token embedding with the output layer")
    bias: bool = param(False, "biases in linear layers and LayerNorms")

    def validate(self) -> None:
        self.require_attention()
        self.require(
            self.positions in POSITIONS,
            "positions",
            f"must be one of {', '.join(POSITIONS)}, got {self.positions!r}",
        )
        head_dim = self.d_model // self.n_heads
        self.require(
            self.positions != "rope" or head_dim % 2 == 0,
            "positions",
            f"rope needs an even head dimension (d_model / n_heads = {head_dim})",
        )
        self.require(
            self.positions != "sinusoidal" or self.d_model % 2 == 0,
            "positions",
            f"sinusoidal positions need an even d_model, got {self.d_model}",
        )

    @property
    def ffn_dim(self) -> int:
        return self.d_ff or 4 * self.d_model


_SPACE = {**ATTENTION_SPACE, "positions": {"type": "categorical", "choices": list(POSITIONS)}}


def sinusoidal_table(n: int, d: int) -> torch.Tensor:
    """The fixed ``[n, d]`` sin/cos position table of Vaswani et al. (``d`` even)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv)
    return table


def rope_tables(n: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of shape ``[n, head_dim]`` for the rotate-half form of RoPE."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(n, dtype=torch.float32), inv)  # [n, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x[B, H, T, D]`` by position (``cos``/``sin``: ``[T, D]``)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class KVCache:
    """Per-layer keys and values ``(B, H, T, D)`` of the tokens decoded so far (``length`` = T).

    Each layer's buffer is allocated once for ``max_len`` positions and filled in place: growing
    it with ``torch.cat`` would copy the whole cache at every step (half of decoding time on CPU).
    Buffers start at zero: the compiled step (``compile``) attends over all ``max_len`` positions
    with a mask, and a masked position's weight is 0, which times an uninitialised NaN is NaN.
    """

    def __init__(self, max_len: int, compile: bool = False) -> None:
        self.max_len = max_len
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.length = 0  # tokens stored (the same for every layer once a forward pass is done)
        self.compile = compile  # one-token steps through the compiled fixed-shape step

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's ``k``/``v`` (B, H, t, D) for ``layer``; return its keys/values so far."""
        if layer == len(self.buffers):
            shape = (*k.shape[:2], self.max_len, k.shape[3])
            self.buffers.append((k.new_zeros(shape), v.new_zeros(shape)))
        kb, vb = self.buffers[layer]
        end = self.length + k.shape[2]
        kb[:, :, self.length : end] = k
        vb[:, :, self.length : end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def reorder(self, index: torch.Tensor) -> KVCache:
        """A cache whose batch rows are rows ``index`` of this one (beam search)."""
        out = KVCache(self.max_len, self.compile)
        n = self.length
        for kb, vb in self.buffers:
            k, v = kb.new_zeros((len(index), *kb.shape[1:])), vb.new_zeros((len(index), *vb.shape[1:]))
            k[:, :, :n] = kb[:, :, :n].index_select(0, index)  # only the filled positions
            v[:, :, :n] = vb[:, :, :n].index_select(0, index)
            out.buffers.append((k, v))
        out.length = n
        return out


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` that costs nothing when it does nothing. A cached decoding step of a small
    model is a few dozen tiny operations, so no-op ``nn.Dropout`` module calls were a measurable
    share of its time."""
    return F.dropout(x, p, True) if training and p > 0 else x


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p_drop: float) -> torch.Tensor:
    """Causal attention of ``q`` (the last ``t`` positions) over ``k``/``v`` (all ``past + t``)."""
    t, past = q.shape[2], k.shape[2] - q.shape[2]
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p_drop, is_causal=True)
    if t == 1:  # one new token sees every cached one: no mask needed
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p_drop)
    # SDPA's is_causal aligns top-left; new query i sits at absolute position past + i
    mask = torch.ones(t, past + t, dtype=torch.bool, device=q.device).tril(past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)


class CausalSelfAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_heads = c.n_heads
        self.d_model = c.d_model
        self.dropout = c.dropout
        self.c_attn = nn.Linear(c.d_model, 3 * c.d_model, bias=c.bias)
        self.c_proj = nn.Linear(c.d_model, c.d_model, bias=c.bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.c_attn(x).view(b, t, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, t, hd)
        if rope is not None:
            cos, sin = rope[0].to(q.dtype), rope[1].to(q.dtype)  # no-op unless autocast
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, past + t, hd)
        y = _attend(q, k, v, self.dropout if self.training else 0.0)  # (B, H, t, hd)
        y = y.transpose(1, 2).reshape(b, t, d)
        return dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.d_model, c.ffn_dim, bias=c.bias)
        self.c_proj = nn.Linear(c.ffn_dim, c.d_model, bias=c.bias)
        self.dropout = c.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.c_proj(F.gelu(self.c_fc(x))), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.mlp = MLP(c)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, layer)
        return x + self.mlp(self.ln_2(x))


# ---------------------------------------------------------------------------------------------
# one decoding step with fixed shapes, compiled


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``. For a single row on the CPU inside a compiled step it is written as a
    multiply-and-sum, which inductor turns into one vectorised pass over the weight's contiguous
    rows: twice as fast as the BLAS call for one row (on the AMD EPYC of the benchmarks), and a
    decoding step of one sequence is bound by reading its weights."""
    if x.shape[0] == 1 and x.device.type == "cpu" and torch.compiler.is_compiling():
        y = (x[:, None, :] * layer.weight).sum(-1)
        return y if layer.bias is None else y + layer.bias
    return layer(x)


def _one_token_step(model: GPT, idx: torch.Tensor, pos: torch.Tensor, keys: list[torch.Tensor],
                    values: list[torch.Tensor]) -> torch.Tensor:
    """Logits (B, V) of one new token per row (``idx``: B x 1) at position ``pos`` (LongTensor
    [1]) against each layer's whole ``max_len`` cache buffer (B, H, max_len, D), later positions
    masked: every shape is the same at every step, so one compiled graph serves a whole
    generation (a growing view would recompile or need dynamic shapes). The math of
    ``GPT.forward`` with a cache in eval mode, called without module wrappers."""
    c = model.config
    b, h = idx.shape[0], c.n_heads
    x = model.tok_emb(idx[:, 0])  # (B, C)
    rope = None
    if model.pos_emb is not None:
        x = x + model.pos_emb.weight.index_select(0, pos)
    elif c.positions == "sinusoidal":
        x = x + model.pos_table.index_select(0, pos)
    else:
        rope = (model.rope_cos.index_select(0, pos), model.rope_sin.index_select(0, pos))
    visible = (torch.arange(c.max_len, device=idx.device) <= pos)[None]  # (1, max_len)
    for block, kb, vb in zip(model.blocks, keys, values, strict=True):
        q, k, v = _linear(block.ln_1(x), block.attn.c_attn).view(b, 3, h, 1, -1).unbind(1)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        kb.index_copy_(2, pos, k)
        vb.index_copy_(2, pos, v)
        y = F.scaled_dot_product_attention(q, kb, vb, attn_mask=visible)  # (B, H, 1, hd)
        x = x + _linear(y.reshape(b, -1), block.attn.c_proj)
        x = x + _linear(F.gelu(_linear(block.ln_2(x), block.mlp.c_fc)), block.mlp.c_proj)
    return _linear(model.ln_f(x), model.head)


_compiled: dict[str, object] = {}  # "step": the compiled _one_token_step; "failed": its error


def _inductor_options() -> dict[str, int]:
    """Compute each layer norm and GELU once into a buffer rather than inline in every output of
    the matrix-vector product that reads it (an erf per input and output: 1536 x 384 per layer),
    where this torch's inductor has the knob: 1.7x faster steps on a CPU."""
    from torch._inductor import config

    return {"realize_opcount_threshold": 1} if hasattr(config, "realize_opcount_threshold") else {}


def _compiles_well(idx: torch.Tensor) -> bool:
    """Whether a decoding step of ``idx`` gains from the compiled step: measured on a 2-core
    CPU, one row does (1.7x: its matrix-vector products are bound by reading the weights), while
    more rows do not (BLAS already does their products well, and attending over the whole buffer
    costs more than a view of the filled part). Only without autograd: decoding is inference."""
    return not torch.is_grad_enabled() and (idx.shape[0] == 1 or idx.device.type != "cpu")


def _compiled_step(model: GPT, idx: torch.Tensor, cache: KVCache) -> torch.Tensor | None:
    """Logits (B, V) of ``idx`` (B x 1) through the compiled step, or ``None`` where compiling
    is not possible here (no C++ compiler, an unsupported platform): the caller then takes the
    eager path, and later calls do not try again."""
    if "failed" in _compiled:
        return None
    if "step" not in _compiled:
        # dynamic=False: one graph per batch size; parameters stay inputs (not frozen), so a
        # model that trains on between generations (BLEU during training) is decoded as it is
        _compiled["step"] = torch.compile(_one_token_step, dynamic=False, fullgraph=True,
                                          options=_inductor_options())
    pos = torch.tensor([cache.length], device=idx.device)
    # a fresh contiguous copy: the decode loop passes a slice of its growing token tensor, whose
    # stride changes every step, and a new stride would mean a new graph
    idx = idx.reshape(-1, 1).clone(memory_format=torch.contiguous_format)
    try:
        return _compiled["step"](model, idx, pos, [k for k, _ in cache.buffers],
                                 [v for _, v in cache.buffers])
    except Exception as e:  # noqa: BLE001 - any failure to compile means: decode eagerly
        if type(e).__name__ == "FailOnRecompileLimitHit":  # graphs for too many models or batch
            cache.compile = False  # sizes in this process: this generation goes eagerly, the others
            return None  # already compiled still serve
        first_line = (str(e).strip().splitlines() or [""])[0]
        _compiled["failed"] = f"{type(e).__name__}: {first_line}"
        log.warning("compiled decoding step unavailable, decoding eagerly (%s)", _compiled["failed"])
        return None


@register(
    "gpt",
    config=GPTConfig,
    sizing=Sizing(scales_with_width=("d_ff",)),
    presets=ATTENTION_PRESETS,
    description="GPT-2 style pre-LN decoder, SDPA causal attention, learned/sinusoidal/rope "
    "positions, tied embeddings",
    search_space=_SPACE,
    recipe=ATTENTION,
)
class GPT(LanguageModel):
    attention_layers = True
    incremental = True  # through the KV cache of decode_state()

    def __init__(self, vocab_size: int, config: GPTConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.tok_emb = nn.Embedding(vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model) if c.positions == "learned" else None
        if c.positions == "sinusoidal":
            self.register_buffer(
                "pos_table", sinusoidal_table(c.max_len, c.d_model), persistent=False
            )
        if c.positions == "rope":
            cos, sin = rope_tables(c.max_len, c.d_model // c.n_heads)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model, bias=c.bias)
        self.head = nn.Linear(c.d_model, vocab_size, bias=False)
        if c.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_module)
        resid_std = 0.02 / math.sqrt(2 * c.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=resid_std)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def decode_state(self) -> KVCache:
        return KVCache(self.config.max_len)  # decoding sets .compile for the compiled step

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """``state``: ``None`` (training, evaluation) or a :class:`KVCache` that ``idx`` continues."""
        c, cache = self.config, state if isinstance(state, KVCache) else None
        t = idx.shape[1]
        off = cache.length if cache is not None else 0  # absolute position of idx[:, 0]
        self.check_length(off + t)
        if cache is not None and cache.compile and t == 1 and off and not self.training:
            # one token after the prefill (which filled the buffers) through the compiled step
            logits = _compiled_step(self, idx, cache) if _compiles_well(idx) else None
            if logits is not None:
                cache.length += 1
                return logits[:, None], cache
        x = self.tok_emb(idx)  # (B, t, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[off : off + t]
        elif c.positions == "sinusoidal":
            x = x + self.pos_table[off : off + t]
        else:
            rope = (self.rope_cos[off : off + t], self.rope_sin[off : off + t])
        x = dropout(x, c.dropout, self.training)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i)
        if cache is not None:
            cache.length += t
        return self.head(self.ln_f(x)), cache
