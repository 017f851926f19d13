"""``transformer``: a stack of ``nn.TransformerEncoderLayer`` (pre-LayerNorm) with a causal mask
and learned positions -- the "textbook PyTorch" Transformer language model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmbench.models.base import LanguageModel, ModelConfig, Sizing, State, param, register
from lmbench.models.recipes import ATTENTION


@dataclass
class TransformerConfig(ModelConfig):
    d_model: int = param(192, "model width")
    n_layers: int = param(2, "encoder layers")
    n_heads: int = param(6, "attention heads (must divide d_model)")
    d_ff: int = param(0, "feed-forward width; 0 means 4 * d_model")
    dropout: float = param(0.1, "dropout in attention, feed-forward and on embeddings")
    max_len: int = param(256, "maximum context length (learned positions)")
    tie_weights: bool = param(True, "share the token embedding with the output layer")

    def validate(self) -> None:
        self.require_attention()

    @property
    def ffn_dim(self) -> int:
        return self.d_ff or 4 * self.d_model


# shared with gpt: the two attention models are sized and searched alike
ATTENTION_PRESETS = {
    "small": {"d_model": 64, "n_layers": 2, "n_heads": 4, "dropout": 0.0},
    "default": {"d_model": 192, "n_layers": 2, "n_heads": 6, "dropout": 0.1},
    "large": {"d_model": 384, "n_layers": 4, "n_heads": 6, "dropout": 0.1},
}

ATTENTION_SPACE = {
    # sized for a CPU budget of minutes; a spec's search.space widens it for bigger machines
    "d_model": {"type": "categorical", "choices": [64, 128, 192, 256]},
    "n_layers": {"type": "int", "low": 1, "high": 3},
    "n_heads": {"type": "categorical", "choices": [2, 4]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


@register(
    "transformer",
    config=TransformerConfig,
    sizing=Sizing(scales_with_width=("d_ff",)),
    presets=ATTENTION_PRESETS,
    description="nn.TransformerEncoder (pre-LN) with a causal mask and learned positions",
    search_space=ATTENTION_SPACE,
    recipe=ATTENTION,
)
class TransformerLM(LanguageModel):
    attention_layers = True

    def __init__(self, vocab_size: int, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.tok_emb = nn.Embedding(vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=c.d_model,
            nhead=c.n_heads,
            dim_feedforward=c.ffn_dim,
            dropout=c.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=c.n_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(c.d_model, vocab_size, bias=False)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        if c.tie_weights:
            self.head.weight = self.tok_emb.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)
        mask = torch.ones(c.max_len, c.max_len, dtype=torch.bool).triu(1)  # True = masked
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        t = idx.shape[1]
        self.check_length(t)
        x = self.drop(self.tok_emb(idx) + self.pos_emb.weight[:t])
        x = self.encoder(x, mask=self.causal_mask[:t, :t], is_causal=True)
        return self.head(x), None
