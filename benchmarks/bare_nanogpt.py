"""nanoGPT's CPU Shakespeare recipe as a bare PyTorch loop: the independent side of nanogpt_reference.

Written from nanoGPT's published recipe, not from lmbench: its ``prepare.py`` vocabulary (the
sorted characters of the whole text, 65 of them) and 90/10 split; a GPT-2 decoder without biases
(LayerNorm eps 1e-5, exact GELU, tied embeddings, N(0, 0.02) init with the residual projections at
0.02/sqrt(2 * layers)); AdamW (betas 0.9/0.99, weight decay 0.1 on matrices and embeddings only);
linear warmup over 100 steps then a cosine from 1e-3 to 1e-4 at step 2000; gradient clip 1.0;
batches of 12 windows of 64 at offsets ``torch.randint(len(train) - 64, (12,))``, the first drawn
before the loop and the next one after each forward, as nanoGPT's ``train.py`` does. Nothing here
imports lmbench, so a bug in lmbench cannot hide in both sides.

:func:`window_loss` is the one evaluator both sides are scored with: the token-weighted mean NLL
over every non-overlapping 64-character window of the validation split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAYERS, HEADS, WIDTH, CONTEXT, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, STEPS, DECAY, BETAS, CLIP = 1e-3, 1e-4, 100, 2000, 0.1, (0.9, 0.99), 1.0


class Block(nn.Module):
    """Pre-LayerNorm block: causal self-attention, then a 4x GELU MLP, each added to the residual."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH, bias=False), nn.LayerNorm(WIDTH, bias=False)
        self.qkv, self.out = nn.Linear(WIDTH, 3 * WIDTH, bias=False), nn.Linear(WIDTH, WIDTH, bias=False)
        self.up, self.down = nn.Linear(WIDTH, 4 * WIDTH, bias=False), nn.Linear(4 * WIDTH, WIDTH, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        heads = self.qkv(self.norm1(x)).view(b, t, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(heads[0], heads[1], heads[2], is_causal=True)
        x = x + self.out(att.transpose(1, 2).reshape(b, t, WIDTH))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, WIDTH), nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
        self.norm = nn.LayerNorm(WIDTH, bias=False)
        for p in [self.tok.weight, self.pos.weight] + [m.weight for m in self.modules() if isinstance(m, nn.Linear)]:
            nn.init.normal_(p, 0.0, 0.02)
        for block in self.blocks:  # GPT-2: residual projections scaled by the depth
            for p in (block.out.weight, block.down.weight):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * LAYERS))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return F.linear(self.norm(self.blocks(x)), self.tok.weight)  # tied output layer


def lr_at(step: int, steps: int = STEPS) -> float:
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    ratio = min(1.0, (step - WARMUP) / max(1, steps - WARMUP))
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def encode(text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """nanoGPT's prepare.py: a vocabulary of the whole text's characters; the first 90% trains."""
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:], len(stoi)


def window_loss(logits_of: Callable[[torch.Tensor], torch.Tensor], ids: np.ndarray, chunk: int = 256) -> float:
    """Token-weighted mean NLL over every non-overlapping CONTEXT-token window of ``ids``."""
    n = (len(ids) - 1) // CONTEXT
    x = torch.from_numpy(ids[: n * CONTEXT]).view(n, CONTEXT)
    y = torch.from_numpy(ids[1: n * CONTEXT + 1]).view(n, CONTEXT)
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, chunk):
            logits = logits_of(x[i:i + chunk])
            total += F.cross_entropy(logits.flatten(0, 1).float(), y[i:i + chunk].flatten(), reduction="sum").item()
    return total / y.numel()


def train(text: str, seed: int, steps: int = STEPS) -> dict:
    """nanoGPT's loop for ``steps`` steps (the cosine ends there); the last weights scored on the
    whole last 10%."""
    train_ids, val_ids, vocab = encode(text)
    torch.manual_seed(seed)
    model = TinyGPT(vocab)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": matrices, "weight_decay": DECAY}, {"params": vectors, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS)
    data = torch.from_numpy(train_ids)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(data) - CONTEXT, (BATCH,))
        return (torch.stack([data[i:i + CONTEXT] for i in ix]), torch.stack([data[i + 1:i + 1 + CONTEXT] for i in ix]))

    t0 = time.perf_counter()
    x, y = batch()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        x, y = batch()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    model.eval()
    return {"val_loss": window_loss(model, val_ids), "train_s": seconds, "last_train_loss": float(loss.item()),
            "vocab": vocab, "seed": seed}
