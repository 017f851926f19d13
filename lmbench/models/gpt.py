"""``gpt``: a GPT-2 style decoder (pre-LayerNorm blocks, causal scaled-dot-product attention).

Kept as lean as nanoGPT's model: one fused qkv projection, ``F.scaled_dot_product_attention``
with ``is_causal=True``, tied embeddings, GPT-2 init (residual projections scaled by
``1/sqrt(2 * n_layers)``). Positions: ``learned`` (a table), ``sinusoidal`` (fixed, added) or
``rope`` (rotary, applied to q and k with precomputed cos/sin up to ``max_len``).

Decoding uses a key/value cache: ``model(new_tokens, cache)`` with the :class:`KVCache` from
``model.decode_state()`` attends to the cached keys and values of the earlier tokens and appends
its own, so each generated token costs one position instead of the whole context. Training
never passes a cache and gets ``None`` back, exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmbench.models.base import LanguageModel, ModelConfig, Sizing, State, param, register
from lmbench.models.recipes import ATTENTION
from lmbench.models.transformer import ATTENTION_PRESETS, ATTENTION_SPACE

POSITIONS = ("learned", "sinusoidal", "rope")


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
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.length = 0  # tokens stored (the same for every layer once a forward pass is done)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's ``k``/``v`` (B, H, t, D) for ``layer``; return its keys/values so far."""
        if layer == len(self.buffers):
            shape = (*k.shape[:2], self.max_len, k.shape[3])
            self.buffers.append((k.new_empty(shape), v.new_empty(shape)))
        kb, vb = self.buffers[layer]
        end = self.length + k.shape[2]
        kb[:, :, self.length : end] = k
        vb[:, :, self.length : end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def reorder(self, index: torch.Tensor) -> KVCache:
        """A cache whose batch rows are rows ``index`` of this one (beam search)."""
        out = KVCache(self.max_len)
        n = self.length
        for kb, vb in self.buffers:
            k, v = kb.new_empty((len(index), *kb.shape[1:])), vb.new_empty((len(index), *vb.shape[1:]))
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
        return KVCache(self.config.max_len)

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """``state``: ``None`` (training, evaluation) or a :class:`KVCache` that ``idx`` continues."""
        c, cache = self.config, state if isinstance(state, KVCache) else None
        t = idx.shape[1]
        off = cache.length if cache is not None else 0  # absolute position of idx[:, 0]
        self.check_length(off + t)
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
