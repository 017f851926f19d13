"""``seq2seq``: an encoder-decoder Transformer for prompt -> completion data, behind the same
``forward(idx[B,T], state=None) -> (logits[B,T,V], None)`` contract as every other model.

How one contract fits an encoder-decoder
----------------------------------------
The model receives exactly what decoder-only models receive: a record
``[BOS] prompt [EOS] completion [EOS]`` (the data inserts the separator EOS; see
:mod:`lmbench.data.batching`), and the loss mask on completion tokens is the data's job. The
model splits each row internally at its *first* EOS, position ``s``:

* **encoder** - bidirectional self-attention over ``idx[:, :s]`` (BOS + prompt);
* **decoder** - positions ``s..T-1`` (separator + completion; the separator EOS acts as the
  decoder's start token, as in BART) with causal self-attention *within that segment only* and
  cross-attention to the encoder's outputs: the textbook encoder-decoder, with teacher forcing.

Positions before ``s`` must still produce logits. They are decoded by the same decoder stack as
a causal LM over the prompt segment whose cross-attention sees only a learned "null" memory slot
(every query always sees it, so no attention row is ever empty). Their targets are masked on
prompt/completion data, so they cost compute but do not change the objective; on plain text
(which contains no EOS) the whole row is such a segment and the model is a decoder-only LM.

Every logit at position ``t`` depends only on ``idx[:, :t+1]`` (whether ``t >= s`` is itself
decided by the tokens up to ``t``; the encoder only sees tokens before ``s``), so the model is
strictly causal, the contract tests apply unchanged and generation works like any other model:
it re-runs the (windowed) context each step. Positions are learned and restart at 0 in each
segment, so the decoder's positions do not depend on the prompt length. All of it is one pass
with per-row boolean attention masks - no gather/scatter of ragged prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmbench.data.tokenizers import EOS  # the prompt/completion separator
from lmbench.models.base import LanguageModel, Sizing, State, param, register
from lmbench.models.gpt import MLP
from lmbench.models.recipes import ATTENTION
from lmbench.models.transformer import ATTENTION_PRESETS, ATTENTION_SPACE, TransformerConfig

# the attention models' presets, but "small" with one encoder + one decoder layer: an encoder
# plus a decoder layer hold ~28 d^2 weights against ~12 d^2 for a gpt block
_PRESETS = {**ATTENTION_PRESETS, "small": {**ATTENTION_PRESETS["small"], "n_layers": 1}}


@dataclass
class Seq2SeqConfig(TransformerConfig):
    """The encoder-only transformer's fields (and rules), read per stack, plus biases."""

    n_layers: int = param(2, "encoder layers and decoder layers (each)")
    max_len: int = param(256, "maximum length of prompt + completion (learned positions)")
    bias: bool = param(False, "biases in linear layers and LayerNorms")


class Attention(nn.Module):
    """Multi-head attention of ``x`` over ``mem`` (``mem is x`` for self-attention) with a mask."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.n_heads, self.dropout = c.n_heads, c.dropout
        self.q = nn.Linear(c.d_model, c.d_model, bias=c.bias)
        self.kv = nn.Linear(c.d_model, 2 * c.d_model, bias=c.bias)
        self.c_proj = nn.Linear(c.d_model, c.d_model, bias=c.bias)
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, C), mem (B, S, C), mask (B, 1, T, S) bool, True = may attend."""
        b, t, d = x.shape
        h = self.n_heads
        q = self.q(x).view(b, t, h, d // h).transpose(1, 2)  # (B, H, T, hd)
        k, v = self.kv(mem).view(b, mem.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)  # (B, H, S, hd) each
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.resid_drop(self.c_proj(y))


class EncoderBlock(nn.Module):
    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.attn = Attention(c)
        self.ln_2 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, mask)
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.attn = Attention(c)
        self.ln_2 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.cross = Attention(c)
        self.ln_3 = nn.LayerNorm(c.d_model, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, self_mask: torch.Tensor,
                cross_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, self_mask)
        x = x + self.cross(self.ln_2(x), mem, cross_mask)
        return x + self.mlp(self.ln_3(x))


def segment_masks(idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-row split at the first EOS (see the module docstring).

    Returns ``pos`` (B, T) position ids restarting at the separator, and the boolean masks
    (True = may attend) ``enc`` (B, 1, T, T), ``dec`` (B, 1, T, T) and ``cross`` (B, 1, T, 1+T)
    whose first key is the null memory slot.
    """
    b, t = idx.shape
    ar = torch.arange(t, device=idx.device)
    is_eos = idx == EOS
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), t)  # (B,) s; t = no separator
    completion = ar[None, :] >= first[:, None]  # (B, T)
    prompt = ~completion
    pos = torch.where(completion, ar[None, :] - first[:, None], ar[None, :])  # (B, T)
    eye = torch.eye(t, dtype=torch.bool, device=idx.device)
    enc = prompt[:, None, :] | eye  # (B, T, T): prompt keys (+ self, so no row is empty)
    causal = torch.ones(t, t, dtype=torch.bool, device=idx.device).tril()
    dec = causal & (completion[:, :, None] == completion[:, None, :])  # within the segment
    cross = completion[:, :, None] & prompt[:, None, :]  # (B, T, T): completion -> prompt
    cross = torch.cat([torch.ones(b, t, 1, dtype=torch.bool, device=idx.device), cross], dim=2)
    return pos, enc[:, None], dec[:, None], cross[:, None]


@register(
    "seq2seq",
    config=Seq2SeqConfig,
    sizing=Sizing(scales_with_width=("d_ff",)),
    presets=_PRESETS,
    description="encoder-decoder Transformer (pre-LN): encodes the prompt, decodes the completion "
    "after the EOS separator",
    search_space=ATTENTION_SPACE,
    recipe=ATTENTION,
)
class Seq2Seq(LanguageModel):
    attention_layers = True
    attention_per_layer = 3  # encoder self, decoder self and cross attention per layer index

    def __init__(self, vocab_size: int, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.tok_emb = nn.Embedding(vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        self.null_memory = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.n_layers))
        self.ln_enc = nn.LayerNorm(c.d_model, bias=c.bias)
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model, bias=c.bias)
        self.head = nn.Linear(c.d_model, vocab_size, bias=False)
        self.apply(self._init_module)
        nn.init.normal_(self.null_memory, std=0.02)
        if c.tie_weights:
            self.head.weight = self.tok_emb.weight
        resid_std = 0.02 / (2 * c.n_layers) ** 0.5  # GPT-2 scaling of residual projections
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=resid_std)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        b, t = idx.shape
        self.check_length(t)
        pos, enc_mask, dec_mask, cross_mask = segment_masks(idx)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        mem = x
        for block in self.encoder:
            mem = block(mem, enc_mask)
        # (B, 1+T, C): the null slot, then the encoded positions (only prompt ones are attended)
        mem = torch.cat([self.null_memory.expand(b, 1, -1).to(mem.dtype), self.ln_enc(mem)], dim=1)
        for block in self.decoder:
            x = block(x, mem, dec_mask, cross_mask)
        return self.head(self.ln_f(x)), None
