"""Batches for training and evaluation.

Text (a 1-D token array, usually a read-only memmap):

* **train** - the classic "batchify" layout: the array is viewed as ``B`` parallel contiguous
  streams; batch ``j`` of an epoch is window ``j`` (``seq_len`` tokens) of every stream, so row
  ``i`` of batch ``k+1`` continues row ``i`` of batch ``k`` (``carry=True``) and stateful models can
  keep their hidden state. Each epoch starts at an offset in ``[0, seq_len)`` drawn from
  ``(seed, epoch)``; its first batch has ``carry=False``. ``batch(k)`` is a pure function of
  ``k``, so resuming at step ``k`` is just calling ``batch(k)``.
* **train, random order** (:class:`RandomTextBatcher`, ``data.order: random``) - nanoGPT's
  ``get_batch``: each row is a window at an offset drawn uniformly from ``[0, n - seq_len)``, the
  offsets of batch ``k`` from ``(seed, k)`` alone, so ``batch(k)`` is pure in ``k`` too (resuming at
  step ``k`` is exact); ``carry`` is always False. Which order a run gets is :func:`resolve_order`.
* **eval** - the targets ``tokens[1:]`` are cut into ``B`` contiguous chunks, each predicted from
  the token before it, so every token except the split's first is a target exactly once and the
  number of targets is ``n_tokens - 1`` whatever the batch shape. Windows of the chunks follow
  each other with ``carry=True`` after the first; the ragged end is padded with PAD in ``y``.

Records (prompt/completion): each record is ``[BOS] + prompt + [EOS] + completion + [EOS]``
truncated to ``seq_len + 1`` tokens. The first EOS separates prompt from completion: without it a
decoder-only model could not tell where the prompt ends (``abc`` + ``cba`` vs ``abcc`` + ``ba``),
and the ``seq2seq`` model splits its input there (encoder: BOS + prompt; decoder: EOS +
completion, EOS acting as the decoder's start token as in BART). Only completion tokens and the
final EOS are targets (prompt and separator targets are PAD in ``y``); a batch is padded to its longest record; ``carry`` is always False; the train order is
shuffled per epoch from ``(seed, epoch)``.

Batches are built with numpy slicing / fancy indexing on the memmap (never a copy of the whole
array) and handed to torch with ``torch.from_numpy``; ``n_tokens`` is computed on the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lmbench.data.tokenizers import PAD

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    """``x``, ``y``: LongTensor[B, T]; ``y == PAD`` means "no target here".

    ``carry``: each row continues the same row of the previous batch from the same iterator
    (stateful models may keep their state); ``n_tokens``: number of non-PAD targets.
    """

    x: torch.Tensor
    y: torch.Tensor
    carry: bool
    n_tokens: int

    def to(self, device: Any, non_blocking: bool = False) -> Batch:
        return Batch(
            self.x.to(device, non_blocking=non_blocking),
            self.y.to(device, non_blocking=non_blocking),
            self.carry,
            self.n_tokens,
        )


def _batch(x: np.ndarray, y: np.ndarray, carry: bool, n_tokens: int) -> Batch:
    import torch

    return Batch(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        carry,
        int(n_tokens),
    )


# ---------------------------------------------------------------------------------------------
# text


def _checked_length(tokens: np.ndarray, batch_size: int, seq_len: int) -> int:
    """The length of a train split that can be batched (both batchers need 2 tokens at least)."""
    if len(tokens) < 2:
        raise ValueError(f"the train split has {len(tokens)} tokens; need at least 2")
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be >= 1")
    return len(tokens)


class TextBatcher:
    """Train batches over a token stream; ``batch(k)`` is pure in ``k``.

    When the split is too short for ``batch_size`` streams of at least one ``seq_len`` window,
    fewer streams (and, for tiny splits, a shorter window) are used: ``batch_size`` and
    ``seq_len`` on the batcher are the effective values.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int):
        n = _checked_length(tokens, batch_size, seq_len)
        self.tokens = tokens
        self.seed = seed
        self.seq_len = t = min(seq_len, n - 1)
        # Epoch offsets lie in [0, max_offset]; every stream needs a whole window after it.
        self.max_offset = min(t - 1, n - 1 - t)
        self.batch_size = b = min(batch_size, (n - 1 - self.max_offset) // t)
        self.stream_len = (n - 1 - self.max_offset) // b  # targets per stream
        self.batches_per_epoch = self.stream_len // t
        self._cols = np.arange(t + 1)
        self._rows = np.arange(b) * self.stream_len

    def offset(self, epoch: int) -> int:
        if self.max_offset == 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(0, self.max_offset + 1))

    def batch(self, k: int) -> Batch:
        epoch, j = divmod(k, self.batches_per_epoch)
        start = self.offset(epoch) + j * self.seq_len
        idx = (start + self._rows)[:, None] + self._cols  # (B, T+1)
        window = self.tokens[idx]
        return _batch(window[:, :-1], window[:, 1:], j > 0, self.batch_size * self.seq_len)

    def __iter__(self) -> Iterator[Batch]:
        k = 0
        while True:
            yield self.batch(k)
            k += 1


class RandomTextBatcher:
    """Train batches of windows at uniformly random offsets (nanoGPT's ``get_batch``).

    Row ``i`` of batch ``k`` is ``tokens[o : o + seq_len + 1]`` with ``o`` the ``i``-th offset drawn
    by ``default_rng([seed, k])`` from ``[0, n - seq_len)``: a pure function of ``(seed, k)``. A
    window never continues another (``carry=False``), so stateful models start every row afresh.
    ``batches_per_epoch`` is how many batches hold as many tokens as the split (for reports only).
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int):
        n = _checked_length(tokens, batch_size, seq_len)
        self.tokens, self.seed = tokens, seed
        self.seq_len = min(seq_len, n - 1)
        self.batch_size = batch_size  # windows may overlap: a short split needs no fewer rows
        self.batches_per_epoch = max(1, (n - 1) // (batch_size * self.seq_len))
        self._cols = np.arange(self.seq_len + 1)

    def batch(self, k: int) -> Batch:
        starts = np.random.default_rng([self.seed, k]).integers(0, len(self.tokens) - self.seq_len,
                                                                size=self.batch_size)
        window = self.tokens[starts[:, None] + self._cols]  # (B, T+1)
        return _batch(window[:, :-1], window[:, 1:], False, self.batch_size * self.seq_len)

    def __iter__(self) -> Iterator[Batch]:
        k = 0
        while True:
            yield self.batch(k)
            k += 1


ORDERS = ("stream", "random")


def resolve_order(order: str, stateful: bool) -> str:
    """``data.order``: ``auto`` is ``stream`` for an architecture that carries state from batch to
    batch (truncated BPTT needs contiguous streams) and ``random`` for the others (nanoGPT's order:
    more varied batches than the few streams of a contiguous layout)."""
    if order == "auto":
        return "stream" if stateful else "random"
    if order not in ORDERS:
        raise ValueError(f"unknown batch order {order!r} (choose from auto, {', '.join(ORDERS)})")
    return order


def text_n_targets(n_tokens: int, max_tokens: int | None = None) -> int:
    """Targets of a text split in evaluation: every token but the first (capped by max_tokens)."""
    m = max(n_tokens - 1, 0)
    return m if max_tokens is None else min(m, max_tokens)


def text_eval_batches(
    tokens: np.ndarray, batch_size: int, seq_len: int, max_tokens: int | None = None
) -> Iterator[Batch]:
    """Deterministic eval batches covering every target of ``tokens[1:max_tokens+1]`` exactly once."""
    m = text_n_targets(len(tokens), max_tokens)
    if m == 0:
        return
    # Fewer, longer rows when the split is short: more context per target, same batch count.
    rows = max(1, min(batch_size, math.ceil(m / seq_len)))
    length = math.ceil(m / rows)
    rows = math.ceil(m / length)
    starts = np.arange(rows) * length
    lens = np.minimum(length, m - starts)  # the last row may be shorter
    for j, pos in enumerate(range(0, length, seq_len)):
        w = min(seq_len, length - pos)
        offs = pos + np.arange(w)
        valid = offs[None, :] < lens[:, None]  # (R, w)
        idx = np.minimum(starts[:, None] + offs, m - 1)
        x = tokens[idx]  # input at target position i is token i; the target is token i+1
        y = tokens[idx + 1]
        if not valid.all():
            x = np.where(valid, x, PAD)
            y = np.where(valid, y, PAD)
        yield _batch(x, y, j > 0, int(valid.sum()))


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class RecordSplit:
    """The records of one split, stored flat.

    Record ``i`` is ``tokens[offsets[i]:offsets[i+1]]`` =
    ``[BOS] + prompt + [EOS] + completion + [EOS]`` with ``n_prompt[i]`` prompt tokens. Indexing
    gives ``(tokens, loss_mask)``, where ``loss_mask[t]`` is True for the tokens that are loss
    targets (completion tokens and the final EOS).
    """

    tokens: np.ndarray
    offsets: np.ndarray
    n_prompt: np.ndarray

    def __len__(self) -> int:
        return len(self.n_prompt)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        toks = np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]])
        mask = np.zeros(len(toks), dtype=bool)
        mask[2 + int(self.n_prompt[i]) :] = True  # after BOS, the prompt and the separator
        return toks, mask

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def n_truncated(self, seq_len: int) -> int:
        return int((self.lengths > seq_len + 1).sum())

    def n_targets(self, seq_len: int) -> np.ndarray:
        """Per record: targets left after truncation to ``seq_len + 1`` tokens."""
        kept = np.minimum(self.lengths, seq_len + 1)
        return np.maximum(kept - 2 - self.n_prompt, 0)

    def make_batch(self, indices: np.ndarray, seq_len: int) -> Batch:
        kept = np.minimum(self.lengths[indices], seq_len + 1)
        width = int(kept.max()) - 1
        x = np.full((len(indices), width), PAD, dtype=np.int64)
        y = np.full((len(indices), width), PAD, dtype=np.int64)
        n = 0
        for r, i in enumerate(indices.tolist()):
            a = int(self.offsets[i])
            k = int(kept[r])
            toks = self.tokens[a : a + k]
            x[r, : k - 1] = toks[:-1]
            y[r, : k - 1] = toks[1:]
            p = int(self.n_prompt[i]) + 1  # the prompt and the separator EOS
            y[r, : min(p, k - 1)] = PAD  # targets that are given (prompt, separator) carry no loss
            n += max(k - 1 - p, 0)
        return _batch(x, y, False, n)


class RecordBatcher:
    """Train batches of records, shuffled per epoch from ``(seed, epoch)``; ``batch(k)`` is pure."""

    def __init__(self, records: RecordSplit, batch_size: int, seq_len: int, seed: int):
        if len(records) == 0:
            raise ValueError("the train split has no records")
        self.records = records
        self.seed = seed
        self.seq_len = seq_len
        self.batch_size = min(batch_size, len(records))
        self.batches_per_epoch = len(records) // self.batch_size
        self._perm: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = (epoch, rng.permutation(len(self.records)))
        return self._perm[1]

    def batch(self, k: int) -> Batch:
        epoch, j = divmod(k, self.batches_per_epoch)
        idx = self.order(epoch)[j * self.batch_size : (j + 1) * self.batch_size]
        return self.records.make_batch(idx, self.seq_len)

    def __iter__(self) -> Iterator[Batch]:
        k = 0
        while True:
            yield self.batch(k)
            k += 1


def record_eval_count(records: RecordSplit, seq_len: int, max_tokens: int | None) -> int:
    """How many leading records an eval over ``max_tokens`` targets uses (a fixed prefix)."""
    if max_tokens is None:
        return len(records)
    cum = np.cumsum(records.n_targets(seq_len))
    return min(int(np.searchsorted(cum, max_tokens)) + 1, len(records))


def record_eval_batches(
    records: RecordSplit, batch_size: int, seq_len: int, max_tokens: int | None = None
) -> Iterator[Batch]:
    """Records in order, ``batch_size`` at a time (the last batch may be smaller)."""
    n = record_eval_count(records, seq_len, max_tokens)
    for a in range(0, n, batch_size):
        yield records.make_batch(np.arange(a, min(a + batch_size, n)), seq_len)
