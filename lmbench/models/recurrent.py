"""Recurrent language models: ``rnn`` (tanh Elman), ``lstm`` and ``gru``.

One class parametrised by the cell type: embedding -> dropout -> multi-layer ``nn.RNN`` /
``nn.LSTM`` / ``nn.GRU`` -> dropout -> (projection hidden->embed when tied and sizes differ) ->
decoder. The hidden state is returned so the training loop can carry it across contiguous batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmbench.models.base import LanguageModel, ModelConfig, Sizing, State, param, register
from lmbench.models.recipes import RECURRENT


@dataclass
class RecurrentConfig(ModelConfig):
    d_embed: int = param(256, "token embedding size")
    d_model: int = param(256, "hidden size of each recurrent layer")
    n_layers: int = param(2, "stacked recurrent layers")
    dropout: float = param(0.1, "dropout on embeddings, between layers and on the output")
    tie_weights: bool = param(
        True,
        "share the embedding with the decoder (adds a hidden->embed "
        "projection when d_embed != d_model)",
    )

    def validate(self) -> None:
        self.require_positive("d_embed", "d_model", "n_layers")
        self.require_dropout()


_PRESETS = {
    "small": {"d_embed": 64, "d_model": 64, "n_layers": 1, "dropout": 0.0},
    "default": {"d_embed": 256, "d_model": 256, "n_layers": 2, "dropout": 0.1},
    "large": {"d_embed": 384, "d_model": 384, "n_layers": 4, "dropout": 0.1},
}

_SPACE = {
    # sized for a CPU budget of minutes; a spec's search.space widens it for bigger machines
    "d_model": {"type": "categorical", "choices": [128, 256, 384]},
    "d_embed": {"type": "categorical", "choices": [64, 128, 256]},
    "n_layers": {"type": "int", "low": 1, "high": 2},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "tie_weights": {"type": "categorical", "choices": [True, False]},
}

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class RecurrentLM(LanguageModel):
    """Shared implementation; subclasses pick ``cell``."""

    cell: str = ""
    stateful = True
    incremental = True  # decoding steps the hidden state token by token
    state_batch_dim = 1  # h (and c): (n_layers, B, d_model)

    def __init__(self, vocab_size: int, config: RecurrentConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        c = config
        self.tok_emb = nn.Embedding(vocab_size, c.d_embed)
        self.drop = nn.Dropout(c.dropout)
        kwargs = {"nonlinearity": "tanh"} if self.cell == "rnn" else {}
        self.rnn = _CELLS[self.cell](
            c.d_embed,
            c.d_model,
            num_layers=c.n_layers,
            dropout=c.dropout if c.n_layers > 1 else 0.0,
            batch_first=True,
            **kwargs,
        )
        d_out = c.d_model
        self.proj: nn.Linear | None = None
        if c.tie_weights and c.d_embed != c.d_model:
            self.proj = nn.Linear(c.d_model, c.d_embed, bias=False)
            d_out = c.d_embed
        self.head = nn.Linear(d_out, vocab_size)
        if c.tie_weights:
            self.head.weight = self.tok_emb.weight
        self._init_weights()

    def _init_weights(self) -> None:
        c = self.config
        nn.init.uniform_(self.tok_emb.weight, -0.1, 0.1)
        gates = _GATES[self.cell]
        h = c.d_model
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight_ih"):
                for g in range(gates):
                    nn.init.xavier_uniform_(p.data[g * h : (g + 1) * h])
            elif name.startswith("weight_hh"):
                for g in range(gates):
                    nn.init.orthogonal_(p.data[g * h : (g + 1) * h])
            elif name.startswith("bias"):
                nn.init.zeros_(p)
                if self.cell == "lstm" and name.startswith("bias_ih"):
                    p.data[h : 2 * h].fill_(1.0)  # forget gate (order i, f, g, o)
        if self.proj is not None:
            nn.init.xavier_uniform_(self.proj.weight)
        if not c.tie_weights:
            nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        x = self.drop(self.tok_emb(idx))
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN's LSTM rejects autocast's mixed dtypes on CPU: run the recurrence in fp32
            with torch.autocast("cpu", enabled=False):
                out, state = self.rnn(x.float(), state)
        else:
            out, state = self.rnn(x, state)
        out = self.drop(out)
        if self.proj is not None:
            out = self.proj(out)
        return self.head(out), state


_DESC = {
    "rnn": "Elman RNN (tanh), carries its hidden state across batches",
    "lstm": "LSTM, carries (h, c) across batches; forget-gate bias 1",
    "gru": "GRU, carries its hidden state across batches",
}


# the embedding width follows the hidden width when sizes are matched
_SIZING = Sizing(follows_width=("d_embed",))


@register(
    "rnn", config=RecurrentConfig, presets=_PRESETS, description=_DESC["rnn"], search_space=_SPACE,
    sizing=_SIZING, recipe=RECURRENT,
)
class RNNLM(RecurrentLM):
    cell = "rnn"


@register(
    "lstm", config=RecurrentConfig, presets=_PRESETS, description=_DESC["lstm"], search_space=_SPACE,
    sizing=_SIZING, recipe=RECURRENT,
)
class LSTMLM(RecurrentLM):
    cell = "lstm"


@register(
    "gru", config=RecurrentConfig, presets=_PRESETS, description=_DESC["gru"], search_space=_SPACE,
    sizing=_SIZING, recipe=RECURRENT,
)
class GRULM(RecurrentLM):
    cell = "gru"
