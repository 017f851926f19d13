"""The two kinds of data, behind one interface: plain text and prompt/completion records.

Everything that differs between them lives here, so no other module asks which kind it holds:
how a split is encoded and cached, how many targets it scores, how it is batched for training
and evaluation, which (prompt, reference) pairs BLEU generates from, how a user's prompt is fed
to a model trained on it, and whether bits per character can be reported.

* **Text**: a split is a 1-D array of token ids. Every token but the first is a target; training
  batches are contiguous streams (:class:`~lmbench.data.batching.TextBatcher`) or windows at random
  offsets (:class:`~lmbench.data.batching.RandomTextBatcher`), as ``data.order`` resolves.
* **Records**: ``[BOS] prompt [EOS] completion [EOS]`` rows (:class:`~lmbench.data.batching.RecordSplit`),
  scored on the completion and its final EOS; BLEU is on by default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmbench.data.batching import (
    Batch,
    RandomTextBatcher,
    RecordBatcher,
    RecordSplit,
    TextBatcher,
    record_eval_batches,
    record_eval_count,
    text_eval_batches,
    text_n_targets,
)
from lmbench.data.tokenizers import BOS, EOS, Tokenizer, encode_to_array
from lmbench.errors import DataError

log = logging.getLogger("lmbench.data.prepare")  # the warnings users know from data preparation


@dataclass
class Pairs:
    """Held-out prompts (token ids, as fed to the model) with their texts and reference texts."""

    prompt_ids: list[list[int]]
    prompts: list[str]
    references: list[str]
    max_tokens: int


class TextKind:
    """Plain text: contiguous token streams."""

    name: ClassVar[str] = "text"
    unit: ClassVar[str] = "lines"  # what ``lmbench data`` counts per split
    bleu_by_default: ClassVar[bool] = False

    def encode(self, out: Path, split: str, corpus: Any, tok: Tokenizer, dtype) -> tuple[np.ndarray, dict, int]:
        """Tokenise one split (extra arrays go to ``out``); returns its tokens, stats and targets."""
        text = corpus.texts[split]
        arr = encode_to_array(tok, text, dtype)
        if len(arr) < 2:
            raise DataError(corpus.source, f"corpus too small: the {split} split has {len(arr)} token(s); "
                            "every split needs at least 2 - use more data or change data.split")
        stats = {"n_tokens": len(arr), "n_chars": len(text), "n_lines": corpus.n_lines[split]}
        return arr, stats, text_n_targets(len(arr))

    def train_texts(self, corpus: Any) -> Iterator[str]:
        """The train split's text (what tokenizers are trained on)."""
        yield corpus.texts["train"]

    def load(self, path: Path, split: str, tokens: np.ndarray) -> np.ndarray:
        return tokens

    def n_targets(self, data: np.ndarray, seq_len: int, max_tokens: int | None) -> int:
        return text_n_targets(len(data), max_tokens)

    def train_batches(self, data: np.ndarray, batch_size: int, seq_len: int, seed: int,
                      order: str = "stream") -> TextBatcher | RandomTextBatcher:
        """Contiguous streams (``stream``) or windows at random offsets (``random``)."""
        batcher = {"stream": TextBatcher, "random": RandomTextBatcher}[order](data, batch_size, seq_len, seed)
        if (batcher.batch_size, batcher.seq_len) != (batch_size, seq_len):
            log.warning("train split (%d tokens) is short: batching %d streams x %d tokens instead of %d x %d",
                        len(data), batcher.batch_size, batcher.seq_len, batch_size, seq_len)
        return batcher

    def truncated(self, data: np.ndarray, seq_len: int) -> int:
        """Items cut to fit a window: none, a stream is cut into windows by design."""
        return 0

    def eval_batches(self, data: np.ndarray, batch_size: int, seq_len: int,
                     max_tokens: int | None) -> Iterator[Batch]:
        return text_eval_batches(data, batch_size, seq_len, max_tokens)

    def generation_pairs(self, data: np.ndarray, tok: Tokenizer, ev: Any, limit: int | None) -> Pairs:
        """Consecutive (prefix, continuation) windows of ``eval.prefix_tokens`` + ``eval.continuation_tokens``."""
        prefix, cont = ev.prefix_tokens, ev.continuation_tokens
        count = len(data) // (prefix + cont)
        count = count if limit is None else min(count, limit)
        ids, prompts, refs = [], [], []
        for i in range(count):
            window = [int(t) for t in data[i * (prefix + cont): (i + 1) * (prefix + cont)]]
            ids.append(window[:prefix])
            prompts.append(tok.decode(window[:prefix]))
            refs.append(tok.decode(window[prefix:]))
        return Pairs(ids, prompts, refs, cont)

    def prompt(self, ids: list[int]) -> list[int]:
        """A user's prompt as a model trained on this kind expects it: the text continues."""
        return ids

    def chars_evaluated(self, n_chars: int, n_tokens: int, targets: int) -> float | None:
        """Characters covered by ``targets`` scored targets, for bits per character: the split's
        characters scaled by targets/tokens (exact for char data: bits per char == per token)."""
        return n_chars * targets / n_tokens


class RecordKind:
    """Prompt/completion records: ``[BOS] prompt [EOS] completion [EOS]``, scored on the completion."""

    name: ClassVar[str] = "records"
    unit: ClassVar[str] = "records"
    bleu_by_default: ClassVar[bool] = True

    def encode(self, out: Path, split: str, corpus: Any, tok: Tokenizer, dtype) -> tuple[np.ndarray, dict, int]:
        records = corpus.records[split]
        prompts = tok.encode_batch([p for p, _ in records])
        completions = tok.encode_batch([c for _, c in records])
        n_prompt = np.fromiter(map(len, prompts), dtype=np.int64, count=len(records))
        lengths = n_prompt + np.fromiter(map(len, completions), dtype=np.int64, count=len(records)) + 3
        offsets = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        arr = np.empty(int(offsets[-1]), dtype=dtype)
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            start = int(offsets[i])
            sep = start + 1 + len(prompt)  # the EOS between prompt and completion
            arr[start] = BOS
            arr[start + 1: sep] = prompt
            arr[sep] = EOS
            arr[sep + 1: sep + 1 + len(completion)] = completion
            arr[sep + 1 + len(completion)] = EOS
        np.save(out / f"{split}.offsets.npy", offsets)
        np.save(out / f"{split}.prompt.npy", n_prompt)
        n_targets = int((np.diff(offsets) - 2 - n_prompt).sum())
        stats = {"n_tokens": len(arr), "n_chars": sum(len(p) + len(c) for p, c in records),
                 "n_records": len(n_prompt), "n_completion_tokens": n_targets}
        return arr, stats, n_targets

    def train_texts(self, corpus: Any) -> Iterator[str]:
        for prompt, completion in corpus.records["train"]:
            yield prompt
            yield completion

    def load(self, path: Path, split: str, tokens: np.ndarray) -> RecordSplit:
        return RecordSplit(tokens, np.load(path / f"{split}.offsets.npy"), np.load(path / f"{split}.prompt.npy"))

    def n_targets(self, data: RecordSplit, seq_len: int, max_tokens: int | None) -> int:
        count = record_eval_count(data, seq_len, max_tokens)
        return int(data.n_targets(seq_len)[:count].sum())

    def train_batches(self, data: RecordSplit, batch_size: int, seq_len: int, seed: int,
                      order: str = "stream") -> RecordBatcher:
        """Whole records, shuffled per epoch whatever ``order`` says (a record has no stream to cut)."""
        return RecordBatcher(data, batch_size, seq_len, seed)

    def truncated(self, data: RecordSplit, seq_len: int) -> int:
        """Records longer than ``seq_len + 1`` tokens, whose completion is cut."""
        return data.n_truncated(seq_len)

    def eval_batches(self, data: RecordSplit, batch_size: int, seq_len: int,
                     max_tokens: int | None) -> Iterator[Batch]:
        return record_eval_batches(data, batch_size, seq_len, max_tokens)

    def generation_pairs(self, data: RecordSplit, tok: Tokenizer, ev: Any, limit: int | None) -> Pairs:
        """The first ``limit`` records: prompt with its separator, the completion as reference."""
        count = len(data) if limit is None else min(limit, len(data))
        ids, prompts, refs, longest = [], [], [], 0
        for i in range(count):
            toks = [int(t) for t in data[i][0]]
            n_prompt = int(data.n_prompt[i])
            ids.append(toks[: n_prompt + 2])  # BOS + prompt + the EOS separator
            prompts.append(tok.decode(toks[1: n_prompt + 1]))
            refs.append(tok.decode(toks[n_prompt + 2: -1]))
            longest = max(longest, len(toks) - n_prompt - 3)
        return Pairs(ids, prompts, refs, longest + 8)

    def prompt(self, ids: list[int]) -> list[int]:
        """A user's prompt as the model was trained to see one: ``[BOS] prompt [EOS]``."""
        return [BOS, *ids, EOS]

    def chars_evaluated(self, n_chars: int, n_tokens: int, targets: int) -> float | None:
        """Records score completions only, and their character share is not tracked: no bpc."""
        return None


KINDS: dict[str, TextKind | RecordKind] = {kind.name: kind for kind in (TextKind(), RecordKind())}
