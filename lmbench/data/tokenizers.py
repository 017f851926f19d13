"""Tokenizers: ``char``, ``word``, ``bpe`` and ``unigram`` (SentencePiece), trained on train.

Special ids are fixed for every kind: ``UNK=0, BOS=1, EOS=2, PAD=3``; ordinary symbols start at 4.
``decode`` drops BOS/EOS/PAD and renders UNK as ``⁇``.

Losslessness (``decode(encode(text)) == text`` when no UNK is produced):

* ``char`` - always ("\\n" is an ordinary character).
* ``word`` - tokens are ``\\S+`` runs plus "\\n" as its own token; spaces are dropped and decode
  puts single spaces between words, so it is lossless only for text whose lines are single-space
  separated without leading/trailing spaces or tabs (true for the synthetic corpus).
  On a pre-tokenised corpus (wikitext, ptb: ``pretokenized=True``) the corpus's own ``<unk>``
  is the UNK id and every line end is EOS, as in the reference word_language_model (each line's
  words followed by ``<eos>``); the vocabulary then counts neither, and decode renders UNK as
  ``<unk>`` and EOS as a line end.
* ``bpe`` / ``unigram`` - identity normalisation, no whitespace collapsing, no dummy prefix, and
  "\\n" is a user-defined piece (id 4), so whole multi-line texts encode in one call and decode
  restores them exactly. (We use a newline piece rather than EOS so that EOS keeps meaning
  "end of record" for prompt/completion data.)

Encoding is streamed: :func:`encode_to_array` walks a text in ~4 MB chunks cut at newlines and
concatenates compact per-chunk arrays, so no Python list of all token ids is ever built.
"""

from __future__ import annotations

import io
import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain, repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmbench.errors import SpecError

UNK, BOS, EOS, PAD = 0, 1, 2, 3
N_SPECIAL = 4
SPECIAL_PIECES = ("<unk>", "<s>", "</s>", "<pad>")
UNK_SURFACE = "\u2047"  # ⁇, as SentencePiece renders an unknown piece
CORPUS_UNK = "<unk>"  # how wikitext and Mikolov's PTB spell a word outside their vocabulary
TOKENIZER_KINDS = ("char", "word", "bpe", "unigram")
CHUNK_CHARS = 1 << 22  # ~4 MB of text per encoding step
_FORMAT = 1

# SentencePiece's unigram EM sums per thread, so its scores depend (slightly) on the thread
# count; pin it so the same fingerprint gives the same tokenizer on every machine. BPE training
# is thread-count independent and uses every core.
_UNIGRAM_TRAIN_THREADS = 4
# SentencePiece keeps its sample of sentences in memory (unigram needs ~25 bytes of RAM per
# character): sample at most 2M lines and about 20M characters, whichever is smaller.
_SP_INPUT_SENTENCES = 2_000_000
_SP_INPUT_CHARS = 20_000_000
_SP_MAX_SENTENCE_LENGTH = 1 << 16
_SP_SEED = 0


def iter_chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Consecutive pieces of ``text`` of about ``size`` characters, each ending at a newline."""
    start, n_chars = 0, len(text)
    while start < n_chars:
        end = start + size
        if end >= n_chars:
            end = n_chars
        else:
            nl = text.find("\n", end - 1)
            end = n_chars if nl == -1 else nl + 1
        yield text[start:end]
        start = end


def split_words(text: str) -> list[str]:
    """Word tokens: runs of non-whitespace, and every "\\n" as a token of its own.

    (Same as ``re.findall(r"\\S+|\\n", text)``, several times faster.)
    """
    out: list[str] = []
    for line in text.split("\n"):
        out += line.split()
        out.append("\n")
    out.pop()  # the piece after the last newline has no newline after it
    return out


def _cpu_count() -> int:
    return os.cpu_count() or 1


class Tokenizer(ABC):
    """Text <-> ids. ``vocab_size`` counts the 4 special ids."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode_array(self, text: str) -> np.ndarray:
        """Ids of ``text`` as a 1-D int64 array (the fast path used for whole corpora)."""

    @abstractmethod
    def id_to_piece(self, token_id: int) -> str: ...

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; BOS/EOS/PAD are dropped, UNK becomes ``⁇``."""

    @abstractmethod
    def _save(self, directory: Path) -> dict[str, Any]: ...

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def save(self, directory: str | Path) -> None:
        """Write ``tokenizer.json`` (kind, vocab size, char/word vocab) and SP's ``spm.model``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "kind": self.kind, "vocab_size": self.vocab_size}
        meta.update(self._save(folder))
        (folder / "tokenizer.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _ids(ids: Iterable[int]) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()  # numpy arrays and torch tensors
    return [int(i) for i in ids]


class _VocabTokenizer(Tokenizer):
    """Shared parts of char and word: an explicit list of pieces."""

    def __init__(self, pieces: list[str]):
        self.itos = list(SPECIAL_PIECES) + list(pieces)
        self.stoi = {p: i + N_SPECIAL for i, p in enumerate(pieces)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def id_to_piece(self, token_id: int) -> str:
        return self.itos[token_id]

    def _pieces(self, ids: Iterable[int]) -> list[str]:
        out = []
        for token_id in _ids(ids):
            if token_id == UNK:
                out.append(UNK_SURFACE)
            elif token_id >= N_SPECIAL:
                out.append(self.itos[token_id])
        return out

    def _save(self, directory: Path) -> dict[str, Any]:
        return {"pieces": self.itos[N_SPECIAL:]}


class CharTokenizer(_VocabTokenizer):
    """One id per Unicode character; unseen characters map to UNK."""

    kind = "char"

    def __init__(self, pieces: list[str]):
        super().__init__(pieces)
        codes = np.array([ord(c) for c in pieces], dtype=np.int64)
        top = int(codes.max()) + 1 if len(codes) else 1
        # code point -> id; the extra last slot (UNK) catches every code point above the table.
        self._table = np.full(top + 1, UNK, dtype=np.int64)
        self._table[codes] = np.arange(N_SPECIAL, N_SPECIAL + len(codes))

    def encode_array(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        return self._table[np.minimum(codes, len(self._table) - 1)]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._pieces(ids))


class WordTokenizer(_VocabTokenizer):
    """``\\S+`` words plus "\\n"; lossless only for single-space separated lines (see module doc).

    ``pretokenized``: "\\n" is EOS and ``<unk>`` is UNK rather than words of the vocabulary.
    """

    kind = "word"

    def __init__(self, pieces: list[str], pretokenized: bool = False):
        super().__init__(pieces)
        self.pretokenized = pretokenized
        if pretokenized:
            self.stoi.update({"\n": EOS, CORPUS_UNK: UNK})

    def encode_array(self, text: str) -> np.ndarray:
        words = split_words(text)
        return np.fromiter(map(self.stoi.get, words, repeat(UNK)), dtype=np.int64, count=len(words))

    def decode(self, ids: Iterable[int]) -> str:
        if self.pretokenized:
            marks = {EOS: "\n", UNK: CORPUS_UNK}  # BOS and PAD are dropped
            pieces = [marks.get(i) or self.itos[i] for i in _ids(ids)
                      if i in marks or i >= N_SPECIAL]
        else:
            pieces = self._pieces(ids)
        return " ".join(pieces).replace(" \n", "\n").replace("\n ", "\n")

    def _save(self, directory: Path) -> dict[str, Any]:
        meta = super()._save(directory)
        if self.pretokenized:  # absent otherwise, so other tokenizer.json files stay as they were
            meta["pretokenized"] = True
        return meta


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece ``bpe`` or ``unigram`` model; "\\n" is the user-defined piece 4."""

    def __init__(self, kind: str, model: bytes):
        import sentencepiece as spm

        self.kind = kind  # type: ignore[misc]
        self.model = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, num_threads=_cpu_count())

    def encode_array(self, text: str) -> np.ndarray:
        # Pieces cut at newlines encode exactly like the whole text ("\n" is an atomic piece and
        # there is no dummy prefix), and a list is encoded on every core.
        parts = list(iter_chunks(text, 1 << 12))  # SP encodes long pieces slower
        ids = self.encode_batch(parts)
        return np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=sum(map(len, ids)))

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in _ids(ids) if i not in (BOS, EOS, PAD)])

    def _save(self, directory: Path) -> dict[str, Any]:
        (directory / "spm.model").write_bytes(self.model)
        return {"model_file": "spm.model"}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load a tokenizer written by :meth:`Tokenizer.save`."""
    folder = Path(directory)
    meta = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    kind = meta["kind"]
    if kind == "char":
        tok: Tokenizer = CharTokenizer(meta["pieces"])
    elif kind == "word":
        tok = WordTokenizer(meta["pieces"], pretokenized=meta.get("pretokenized", False))
    elif kind in ("bpe", "unigram"):
        tok = SentencePieceTokenizer(kind, (folder / meta["model_file"]).read_bytes())
    else:
        raise ValueError(f"{folder}: unknown tokenizer kind {kind!r}")
    if tok.vocab_size != meta["vocab_size"]:
        raise ValueError(f"{folder}: vocab size {tok.vocab_size} != recorded {meta['vocab_size']}")
    return tok


# ---------------------------------------------------------------------------------------------
# training


def _top(counts: dict[str, int], vocab_size: int | None) -> list[str]:
    """Most frequent first; ties broken by the symbol so the order is deterministic."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if vocab_size is not None:
        ranked = ranked[: vocab_size - N_SPECIAL]
    return [s for s, _ in ranked]


def check_vocab_size(requested: int | None, available: int, what: str) -> None:
    """SpecError when a char/word vocabulary asks for more symbols than the corpus has."""
    if requested is not None and requested > available + N_SPECIAL:
        raise SpecError(
            "data.vocab_size",
            f"{requested} is too large: the train split has only {available} distinct {what} "
            f"(at most {available + N_SPECIAL} with the 4 special tokens); lower it or leave it "
            "unset",
        )


def _train_char(texts: Iterable[str], vocab_size: int | None) -> CharTokenizer:
    counts: dict[int, int] = {}
    for text in texts:
        for chunk in iter_chunks(text):
            codes = np.frombuffer(chunk.encode("utf-32-le", "surrogatepass"), dtype="<u4")
            code_points, code_counts = np.unique(codes, return_counts=True)
            for code, count in zip(code_points.tolist(), code_counts.tolist(), strict=True):
                counts[code] = counts.get(code, 0) + count
    check_vocab_size(vocab_size, len(counts), "characters")
    return CharTokenizer(_top({chr(k): v for k, v in counts.items()}, vocab_size))


def _train_word(texts: Iterable[str], vocab_size: int | None, pretokenized: bool) -> WordTokenizer:
    counts: Counter[str] = Counter()
    for text in texts:
        for chunk in iter_chunks(text):
            counts.update(split_words(chunk))
    if pretokenized:  # EOS and UNK, not words: every vocab_size slot goes to a real word
        counts.pop("\n", None)
        counts.pop(CORPUS_UNK, None)
    what = "words" if pretokenized else "words (counting newline)"
    check_vocab_size(vocab_size, len(counts), what)
    return WordTokenizer(_top(counts, vocab_size), pretokenized)


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for chunk in iter_chunks(text):
            yield from chunk.split("\n")


def _train_sentencepiece(kind: str, texts: list[str], vocab_size: int) -> SentencePieceTokenizer:
    import sentencepiece as spm

    n_chars = sum(map(len, texts))
    n_lines = sum(t.count("\n") + 1 for t in texts)
    sample = int(min(_SP_INPUT_SENTENCES, max(1000, _SP_INPUT_CHARS * n_lines / max(n_chars, 1))))

    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(_SP_SEED)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(texts),
            model_writer=model,
            model_type=kind,
            vocab_size=vocab_size,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            user_defined_symbols=["\n"],
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            pad_id=PAD,
            byte_fallback=False,
            character_coverage=1.0,
            input_sentence_size=sample,
            shuffle_input_sentence=True,
            max_sentence_length=_SP_MAX_SENTENCE_LENGTH,
            seed_sentencepiece_size=1_000_000,
            num_threads=_UNIGRAM_TRAIN_THREADS if kind == "unigram" else _cpu_count(),
            minloglevel=2,
        )
    except RuntimeError as error:
        msg = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        match = re.search(
            r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", msg
        )
        if match:
            raise SpecError(
                "data.vocab_size",
                f"{vocab_size} is too large for {kind}: the train split supports at most "
                f"{match.group(2)} pieces; lower data.vocab_size",
            ) from None
        match = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", msg)
        if match:
            raise SpecError(
                "data.vocab_size",
                f"{vocab_size} is too small for {kind}: the train split has {match.group(2)} distinct "
                f"characters; use at least {int(match.group(2)) + N_SPECIAL + 1}",
            ) from None
        raise SpecError(
            "data.vocab_size", f"sentencepiece could not train a {kind} model: {msg}"
        ) from None
    return SentencePieceTokenizer(kind, model.getvalue())


def train_tokenizer(
    kind: str, texts: Iterable[str], vocab_size: int | None, *, pretokenized: bool = False
) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``texts`` (the train split's text pieces).

    ``pretokenized`` (the corpus's :attr:`~lmbench.data.sources.Corpus.pretokenized`) changes
    only ``word``: ``<unk>`` -> UNK and line end -> EOS (see the module doc). The other kinds see
    such a corpus as plain text.
    """
    if kind == "char":
        return _train_char(texts, vocab_size)
    if kind == "word":
        return _train_word(texts, vocab_size, pretokenized)
    if kind in ("bpe", "unigram"):
        if vocab_size is None:
            raise SpecError("data.vocab_size", f"tokenizer {kind!r} needs data.vocab_size")
        return _train_sentencepiece(kind, list(texts), vocab_size)
    raise SpecError(
        "data.tokenizer", f"unknown tokenizer {kind!r} (expected one of {TOKENIZER_KINDS})"
    )


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_to_array(tok: Tokenizer, text: str, dtype: np.dtype) -> np.ndarray:
    """Encode a whole text chunk by chunk into one compact array (never a list of all ids)."""
    parts = [tok.encode_array(chunk).astype(dtype, copy=False) for chunk in iter_chunks(text)]
    if not parts:
        return np.zeros(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
