"""``prepare_data``: corpus -> tokenizer (trained on train) -> token arrays, cached by fingerprint.

Cache layout (``cache_dir`` = argument, ``$LMBENCH_CACHE_DIR`` or ``~/.cache/lmbench/tokens``)::

    <cache_dir>/<source>-<tokenizer>-<fingerprint>/
        tokenizer/            tokenizer.json (+ spm.model for bpe/unigram)
        train.npy val.npy test.npy          1-D token ids (uint16, or uint32 for vocab > 65536)
        {split}.offsets.npy {split}.prompt.npy   records only (see RecordSplit)
        meta.json             stats, floor, n_chars, identity of the inputs

The fingerprint hashes the corpus identity (synthetic: size, seed and generator version; named
dataset: its pinned sha256; files: the sha256 of their bytes), the split fractions, the tokenizer
kind and vocab size, and :data:`CACHE_FORMAT`. A folder is built under a temporary name next to
its final place and renamed into it, so readers never see a half-written cache and a concurrent
writer that wins the race is simply used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmbench.data.batching import Batch, RandomTextBatcher, RecordBatcher, TextBatcher
from lmbench.data.kinds import KINDS, Pairs, RecordKind, TextKind
from lmbench.data.sources import SPLITS, Corpus, load_corpus, source_identity, source_label
from lmbench.data.tokenizers import (
    UNK,
    Tokenizer,
    load_tokenizer,
    token_dtype,
    train_tokenizer,
)

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: records carry an EOS separator between prompt and completion


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("LMBENCH_CACHE_DIR") or "~/.cache/lmbench/tokens").expanduser()


def fingerprint(spec: Any, identity: dict[str, Any] | None = None) -> str:
    """16 hex digits identifying the tokenised data of a DataSpec (see module doc)."""
    key = {
        "format": CACHE_FORMAT,
        "corpus": identity if identity is not None else source_identity(spec),
        "split": None if spec.splits is not None else [round(f, 9) for f in spec.split],
        "tokenizer": spec.tokenizer,
        "vocab_size": spec.vocab_size,
    }
    blob = json.dumps(key, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class PreparedData:
    """Tokenised splits plus everything needed to batch and score them.

    ``splits[split]``: text - a read-only 1-D memmap of token ids; records - a
    :class:`~lmbench.data.batching.RecordSplit` (a sequence of ``(tokens, loss_mask)``).
    ``floor[split]`` (synthetic only, else ``None``): the generator's total NLL of the split divided
    by ``n_targets(split)``, in nats per token; ``None`` for a split that contains UNK tokens,
    because then the tokenisation is lossy and the model is scored on a different (easier)
    sequence than the one whose probability the generator recorded.
    """

    spec: Any
    kind: str
    tokenizer: Tokenizer
    splits: dict[str, Any]
    stats: dict[str, Any]
    floor: dict[str, float | None] | None
    n_chars: dict[str, int]
    fingerprint: str
    cache_path: Path
    _warned: set[tuple[str, int]] = field(default_factory=set, repr=False)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def kind_of(self) -> TextKind | RecordKind:
        """The behaviour of this data's kind (see :mod:`lmbench.data.kinds`)."""
        return KINDS[self.kind]

    def n_targets(
        self, split: str, seq_len: int | None = None, max_tokens: int | None = None
    ) -> int:
        """Number of targets :meth:`eval_batches` scores on ``split``.

        Text: ``n_tokens - 1`` (every token but the first), capped by ``max_tokens``; it does not
        depend on the batch shape. Records: completion tokens + EOS left after truncation to
        ``seq_len + 1`` tokens (``seq_len`` defaults to ``spec.seq_len``).
        """
        return self.kind_of.n_targets(self.splits[split], seq_len or self.spec.seq_len, max_tokens)

    def _warn_truncation(self, split: str, seq_len: int) -> None:
        """Records longer than a training window are cut: say so once per split and length."""
        if (split, seq_len) in self._warned:
            return
        self._warned.add((split, seq_len))
        n_truncated = self.kind_of.truncated(self.splits[split], seq_len)
        if n_truncated:
            log.warning("%d of %d %s records are longer than seq_len+1=%d tokens and are truncated",
                        n_truncated, len(self.splits[split]), split, seq_len + 1)

    def train_batches(self, batch_size: int, seq_len: int, seed: int,
                      order: str = "stream") -> TextBatcher | RandomTextBatcher | RecordBatcher:
        """A batcher over the train split: ``.batch(k)`` (pure in k), ``.batches_per_epoch``.

        ``order``: ``stream`` or ``random`` (resolved by the caller, see
        :func:`~lmbench.data.batching.resolve_order`); records ignore it."""
        self._warn_truncation("train", seq_len)
        return self.kind_of.train_batches(self.splits["train"], batch_size, seq_len, seed, order)

    def eval_batches(
        self, split: str, batch_size: int, seq_len: int, max_tokens: int | None = None
    ) -> Iterator[Batch]:
        """Deterministic batches covering ``n_targets(split, seq_len, max_tokens)`` targets once."""
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r} (have {list(self.splits)})")
        self._warn_truncation(split, seq_len)
        return self.kind_of.eval_batches(self.splits[split], batch_size, seq_len, max_tokens)

    def chars_evaluated(self, split: str, targets: int) -> float | None:
        """Characters covered by ``targets`` scored targets of ``split`` (bits per character)."""
        return self.kind_of.chars_evaluated(self.n_chars[split], self.stats[split]["n_tokens"], targets)

    def generation_pairs(self, split: str, ev: Any, limit: int | None) -> Pairs:
        """Held-out (prompt, reference) pairs of ``split`` for BLEU (``ev``: the eval spec)."""
        return self.kind_of.generation_pairs(self.splits[split], self.tokenizer, ev, limit)


# ---------------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        # one channel: logging (the CLI shows INFO unless --quiet)
        level = logging.INFO if self.enabled else logging.DEBUG
        log.log(level, "[data %5.1fs] %s", time.perf_counter() - self.t0, msg)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40] or "data"


def prepare_data(
    spec: Any, *, cache_dir: str | Path | None = None, progress: bool = False
) -> PreparedData:
    """Load, split, tokenise and cache the data of a :class:`~lmbench.spec.DataSpec`.

    A second call with the same inputs loads the cache (memmaps) without reading the corpus
    text (files are only hashed), training a tokenizer or tokenising.
    """
    say = _Progress(progress)
    identity = source_identity(spec)
    fp = fingerprint(spec, identity)
    root = cache_root(cache_dir)
    path = root / f"{_slug(source_label(spec))}-{spec.tokenizer}-{fp}"
    if (path / "meta.json").is_file():
        try:
            data = _load(path, spec)
            say(f"using cached tokens {path}")
            return data
        except Exception as error:  # a damaged cache is rebuilt, never trusted
            log.warning("cache %s is unreadable (%s); rebuilding it", path, error)
            shutil.rmtree(path, ignore_errors=True)
    elif path.exists():  # not ours (we only ever rename complete folders into place)
        shutil.rmtree(path, ignore_errors=True)

    say(f"loading corpus {source_label(spec)}")
    corpus = load_corpus(spec)
    say(f"training {spec.tokenizer} tokenizer on the train split")
    tok = train_tokenizer(
        spec.tokenizer, corpus.train_texts(), spec.vocab_size, pretokenized=corpus.pretokenized
    )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tok.save(tmp / "tokenizer")
        meta = _write_splits(tmp, corpus, tok, say)
        meta.update(
            identity={
                "corpus": identity,
                "split": list(spec.split),
                "tokenizer": spec.tokenizer,
                "vocab_size": spec.vocab_size,
                "format": CACHE_FORMAT,
            },
            fingerprint=fp,
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "meta.json").is_file():
                raise
            log.info("another process cached %s first; using its copy", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"cached tokens in {path}")
    return _load(path, spec)


def _write_splits(out: Path, corpus: Corpus, tok: Tokenizer, say: _Progress) -> dict[str, Any]:
    dtype = token_dtype(tok.vocab_size)
    per: dict[str, dict[str, Any]] = {}
    floor: dict[str, float | None] | None = {} if corpus.nll is not None else None
    kind = KINDS[corpus.kind]
    for split in SPLITS:
        say(f"tokenising {split}")
        arr, st, n_targets = kind.encode(out, split, corpus, tok, dtype)
        st["n_unk"] = int(np.count_nonzero(arr == UNK))
        per[split] = st
        np.save(out / f"{split}.npy", arr)
        if floor is not None and corpus.nll is not None:
            # The floor is exact only if the tokens spell the text the generator scored.
            floor[split] = corpus.nll[split] / n_targets if st["n_unk"] == 0 else None
            st["generator_nll"] = corpus.nll[split]
        del arr
    stats: dict[str, Any] = dict(per)
    stats.update(
        vocab_size=tok.vocab_size,
        source=corpus.source,
        tokenizer=tok.kind,
        kind=corpus.kind,
        dtype=dtype.name,
    )
    return {
        "kind": corpus.kind,
        "stats": stats,
        "floor": floor,
        "n_chars": {s: per[s]["n_chars"] for s in SPLITS},
    }


def _load(path: Path, spec: Any) -> PreparedData:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    tok = load_tokenizer(path / "tokenizer")
    splits: dict[str, Any] = {}
    for split in SPLITS:
        arr = np.load(path / f"{split}.npy", mmap_mode="r")
        splits[split] = KINDS[meta["kind"]].load(path, split, arr)
        if len(arr) != meta["stats"][split]["n_tokens"]:
            raise ValueError(
                f"{split}.npy has {len(arr)} tokens, meta.json says {meta['stats'][split]['n_tokens']}"
            )
    stats = dict(meta["stats"])
    # content-addressed: the same bytes may have been cached from another path
    stats["source"] = source_label(spec)
    stats["fingerprint"] = meta["fingerprint"]
    return PreparedData(
        spec=spec,
        kind=meta["kind"],
        tokenizer=tok,
        splits=splits,
        stats=stats,
        floor=meta["floor"],
        n_chars=meta["n_chars"],
        fingerprint=meta["fingerprint"],
        cache_path=path,
    )


def corpus_stats(
    spec: Any, *, cache_dir: str | Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """What ``lmbench data --source X`` prints: per split characters, lines/records, tokens, UNKs,
    eval targets and floor, plus vocab size, tokenizer, fingerprint and cache folder."""
    data = prepare_data(spec, cache_dir=cache_dir, progress=progress)
    out: dict[str, Any] = {
        "source": data.stats["source"],
        "kind": data.kind,
        "tokenizer": data.tokenizer.kind,
        "vocab_size": data.vocab_size,
        "fingerprint": data.fingerprint,
        "cache_path": str(data.cache_path),
        "splits": {},
    }
    for split in SPLITS:
        st = data.stats[split]
        row = {
            "chars": st["n_chars"],
            data.kind_of.unit: st.get("n_lines", st.get("n_records")),
            "tokens": st["n_tokens"],
            "unk": st["n_unk"],
            "targets": data.n_targets(split),
            "floor": data.floor.get(split) if data.floor else None,
        }
        out["splits"][split] = row
    return out
