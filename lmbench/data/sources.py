"""Corpora: where the text comes from, how it is checked, and how it is split.

A source is one of

* ``synthetic`` - the embedded generator (:mod:`lmbench.data.synthetic`), with per-line NLLs;
* ``synthetic-pairs`` - the embedded prompt -> completion task (:mod:`lmbench.data.pairs`);
* a named dataset from :data:`DATASETS` (e.g. ``tinyshakespeare``), downloaded once from its
  canonical URL, checked against a pinned sha256 and cached under ``$LMBENCH_DATA_DIR``;
* a ``.txt`` file, a folder of ``.txt`` files, or a ``.jsonl`` file (``text`` records, or
  ``prompt`` + ``completion`` records);
* ``data.splits``: explicit train/val/test text files for corpora that come pre-split.

Everything a user can get wrong raises :class:`~lmbench.errors.DataError` naming the file (with
the byte offset or line number when known) before any work is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmbench.errors import DataError, SpecError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PAIRS = "synthetic-pairs"  # the embedded prompt -> completion task (lmbench.data.pairs)
_HASH_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# named datasets


@dataclass(frozen=True)
class DatasetInfo:
    """A downloadable corpus: one UTF-8 text file at a canonical URL with a pinned sha256."""

    name: str
    url: str
    sha256: str
    filename: str
    description: str


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> None:
    """Add a named dataset (one entry is all a new downloadable corpus needs)."""
    if info.name == "synthetic":
        raise ValueError("'synthetic' is reserved for the embedded generator")
    DATASETS[info.name] = info


register_dataset(
    DatasetInfo(
        name="tinyshakespeare",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="input.txt",
        description="40k lines of Shakespeare plays (1.1 MB, 65 distinct characters)",
    )
)


def data_dir() -> Path:
    """Where named datasets live: ``$LMBENCH_DATA_DIR`` or ``~/.cache/lmbench/data``."""
    return Path(os.environ.get("LMBENCH_DATA_DIR") or "~/.cache/lmbench/data").expanduser()


def dataset_path(name: str) -> Path:
    info = DATASETS[name]
    return data_dir() / info.name / info.filename


def list_datasets() -> list[dict[str, Any]]:
    """The named sources: ``synthetic`` (no download; url/sha256 None) and every registered dataset.

    Each entry: name, url, sha256, description, path (None for synthetic), cached (the file
    is present; its hash is checked when it is used).
    """
    out: list[dict[str, Any]] = [
        {
            "name": "synthetic",
            "url": None,
            "sha256": None,
            "description": "embedded deterministic generator with long-range structure and an exact "
            "entropy floor (data.size tokens, data.seed)",
            "path": None,
            "cached": True,
        },
        {
            "name": "synthetic-pairs",
            "url": None,
            "sha256": None,
            "description": "embedded prompt -> completion task (reverse / sort / next over word "
            "sequences; BLEU 1 is reachable; data.size words, data.seed)",
            "path": None,
            "cached": True,
        },
    ]
    for info in DATASETS.values():
        path = dataset_path(info.name)
        out.append(
            {
                "name": info.name,
                "url": info.url,
                "sha256": info.sha256,
                "description": info.description,
                "path": str(path),
                "cached": path.is_file(),
            }
        )
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Fetch ``url`` into ``dest`` (streamed). Raises OSError / urllib errors when offline."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
        while chunk := resp.read(_HASH_CHUNK):
            f.write(chunk)


def ensure_dataset(name: str) -> Path:
    """Return the verified local file of a named dataset, downloading it when needed."""
    info = DATASETS[name]
    path = dataset_path(name)
    how_to = (
        f"download {info.url} and save it as {path} (its sha256 must be {info.sha256}); "
        f"or point $LMBENCH_DATA_DIR at a folder holding {info.name}/{info.filename}"
    )
    problem = "is missing"
    if path.is_file():
        got = sha256_file(path)
        if got == info.sha256:
            return path
        problem = f"has sha256 {got}, expected {info.sha256} (corrupted or a different file)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{info.filename}.", suffix=".part", dir=path.parent
        )
    except OSError as e:
        raise DataError(
            str(path), f"{problem} and cannot be written there ({e}); {how_to}"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s from %s", name, info.url)
        try:
            _download(info.url, tmp, timeout=30.0)
        except (OSError, urllib.error.URLError, ValueError) as e:
            raise DataError(
                str(path), f"{problem} and could not be downloaded ({e}); {how_to}"
            ) from None
        got = sha256_file(tmp)
        if got != info.sha256:
            raise DataError(
                str(path),
                f"{problem}, and the download from {info.url} has sha256 {got}, expected "
                f"{info.sha256}; {how_to}",
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# the corpus


@dataclass
class Corpus:
    """A split corpus.

    ``kind == "text"``: ``texts[split]`` is the split's text (contiguous lines; the splits
    concatenated are the corpus). ``kind == "records"``: ``records[split]`` is a list of
    ``(prompt, completion)``. ``nll[split]`` (synthetic only) is the generator's total NLL
    of the split in nats; ``n_lines[split]`` counts lines (text) or records.
    """

    kind: Literal["text", "records"]
    source: str
    texts: dict[str, str] = field(default_factory=dict)
    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    nll: dict[str, float] | None = None
    n_lines: dict[str, int] = field(default_factory=dict)

    def train_texts(self) -> Iterator[str]:
        """The train split's text pieces (what tokenizers are trained on)."""
        if self.kind == "text":
            yield self.texts["train"]
        else:
            for prompt, completion in self.records["train"]:
                yield prompt
                yield completion


def source_label(spec: Any) -> str:
    """A short human name of the spec's source (used in stats and cache folder names)."""
    if spec.splits is not None:
        return Path(spec.splits.train).expanduser().parent.name or "splits"
    if spec.source in ("synthetic", PAIRS) or spec.source in DATASETS:
        return spec.source
    p = Path(spec.source).expanduser()
    return p.stem if p.suffix else p.name


def _classify(spec: Any) -> tuple[str, Path | None]:
    """(kind, path) with kind in synthetic | dataset | splits | folder | jsonl | text."""
    if spec.splits is not None:
        return "splits", None
    if spec.source == "synthetic":
        return "synthetic", None
    if spec.source == PAIRS:
        return "pairs", None
    if spec.source in DATASETS:
        return "dataset", None
    p = Path(spec.source).expanduser()
    if p.is_dir():
        return "folder", p
    if not p.exists():
        names = ", ".join(["synthetic", PAIRS, *DATASETS])
        raise DataError(
            str(p),
            f"no such file or folder (data.source must be one of {names}, or a path to a .txt "
            "file, a .jsonl file or a folder of .txt files)",
        )
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl", p
    return "text", p


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    if not files:
        raise DataError(str(folder), "folder has no .txt files")
    return files


def source_identity(spec: Any) -> dict[str, Any]:
    """What identifies the corpus content, without reading it into memory.

    Synthetic: (size, seed, generator version) - nothing is generated. Named datasets: the pinned
    sha256 - the file is not even needed on a cache hit. Files: the sha256 of their bytes,
    streamed in 1 MB chunks.
    """
    kind, path = _classify(spec)
    if kind == "synthetic":
        from lmbench.data.synthetic import GENERATOR_VERSION

        return {"synthetic": {"size": spec.size, "seed": spec.seed, "version": GENERATOR_VERSION}}
    if kind == "pairs":
        from lmbench.data.pairs import VERSION

        return {"pairs": {"size": spec.size, "seed": spec.seed, "version": VERSION}}
    if kind == "dataset":
        return {"dataset": spec.source, "sha256": DATASETS[spec.source].sha256}
    if kind == "splits":
        out = {}
        for split in SPLITS:
            p = Path(getattr(spec.splits, split)).expanduser()
            if not p.is_file():
                raise DataError(str(p), f"{split} split file not found (data.splits.{split})")
            out[split] = sha256_file(p)
        return {"splits": out}
    assert path is not None
    if kind == "folder":
        h = hashlib.sha256()
        for p in _folder_files(path):
            h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
        return {"folder": h.hexdigest()}
    return {kind: sha256_file(path)}


def load_corpus(spec: Any) -> Corpus:
    """Read, validate and split the corpus described by a :class:`~lmbench.spec.DataSpec`."""
    kind, path = _classify(spec)
    label = source_label(spec)
    if kind == "synthetic":
        return _synthetic(spec)
    if kind == "pairs":
        from lmbench.data.pairs import generate_pairs

        return _split_records(generate_pairs(spec.size, spec.seed), spec.split, label, PAIRS)
    if kind == "splits":
        texts = {s: read_text(Path(getattr(spec.splits, s)).expanduser()) for s in SPLITS}
        return Corpus(
            "text", label, texts=texts, n_lines={s: _count_lines(t) for s, t in texts.items()}
        )
    if kind == "dataset":
        p = ensure_dataset(spec.source)
        return _text_corpus(read_text(p), spec.split, label, str(p))
    assert path is not None
    if kind == "folder":
        texts = []
        for p in _folder_files(path):
            try:
                texts.append(read_text(p))
            except DataError as e:
                if "empty" not in e.reason and "only whitespace" not in e.reason:
                    raise
                log.warning("skipping %s: %s", p, e.reason)
        if not texts:
            raise DataError(str(path), "every .txt file in the folder is empty")
        return _text_corpus("\n".join(texts), spec.split, label, str(path))
    if kind == "jsonl":
        return _jsonl_corpus(path, spec.split, label)
    return _text_corpus(read_text(path), spec.split, label, str(path))


# ---------------------------------------------------------------------------------------------
# reading and checking


def _decode(raw: bytes, path: Path) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path} at byte {e.start}",
            f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte offset {e.start}, line {line}); "
            "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
        ) from None
    return text.removeprefix("\ufeff")


def read_text(path: Path) -> str:
    """A whole UTF-8 text file; missing, empty, whitespace-only or undecodable -> DataError."""
    if not path.is_file():
        raise DataError(str(path), "file not found" if not path.exists() else "is not a file")
    raw = path.read_bytes()
    if not raw:
        raise DataError(str(path), "file is empty")
    text = _decode(raw, path)
    del raw
    if not text.strip():
        raise DataError(str(path), "file contains only whitespace")
    return text


def _count_lines(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def _snap(text: str, pos: int) -> int:
    """The line boundary (0, len, or just after a newline) nearest to ``pos``."""
    if pos <= 0:
        return 0
    if pos >= len(text):
        return len(text)
    left = text.rfind("\n", 0, pos) + 1
    i = text.find("\n", pos - 1)
    right = len(text) if i == -1 else i + 1
    return left if pos - left <= right - pos else right


def split_points(text: str, fractions: tuple[float, float, float], where: str) -> tuple[int, int]:
    """Cut positions (c1, c2): train = text[:c1], val = text[c1:c2], test = text[c2:].

    Cuts are at the line boundaries nearest to the character fractions; every split must be
    non-empty.
    """
    n = len(text)
    c1 = _snap(text, round(n * fractions[0]))
    c2 = _snap(text, round(n * (fractions[0] + fractions[1])))
    sizes = {"train": c1, "val": c2 - c1, "test": n - c2}
    empty = [s for s, k in sizes.items() if k <= 0]
    if empty:
        raise DataError(
            where,
            f"corpus too small for the split {tuple(fractions)}: the {' and '.join(empty)} split "
            f"would be empty (the corpus has {_count_lines(text)} lines, {n} characters; splits are "
            "cut at line boundaries) - use more data or change data.split",
        )
    return c1, c2


def _text_corpus(
    text: str, fractions: tuple[float, float, float], label: str, where: str
) -> Corpus:
    c1, c2 = split_points(text, fractions, where)
    texts = {"train": text[:c1], "val": text[c1:c2], "test": text[c2:]}
    return Corpus(
        "text", label, texts=texts, n_lines={s: _count_lines(t) for s, t in texts.items()}
    )


def _synthetic(spec: Any) -> Corpus:
    from lmbench.data.synthetic import generate_lines

    lines, nll = generate_lines(spec.size, spec.seed)
    nll = np.asarray(nll, dtype=np.float64)
    if len(lines) != len(nll):
        raise RuntimeError(f"synthetic generator returned {len(lines)} lines but {len(nll)} NLLs")
    text = "\n".join(lines) + "\n"
    c1, c2 = split_points(text, spec.split, f"synthetic (data.size={spec.size})")
    l1, l2 = text.count("\n", 0, c1), text.count("\n", 0, c2)
    texts = {"train": text[:c1], "val": text[c1:c2], "test": text[c2:]}
    del text
    bounds = {"train": (0, l1), "val": (l1, l2), "test": (l2, len(lines))}
    return Corpus(
        "text",
        "synthetic",
        texts=texts,
        nll={s: float(nll[a:b].sum()) for s, (a, b) in bounds.items()},
        n_lines={s: b - a for s, (a, b) in bounds.items()},
    )


def _jsonl_corpus(path: Path, fractions: tuple[float, float, float], label: str) -> Corpus:
    if not path.is_file():
        raise DataError(str(path), "file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(str(path), "file is empty")
    text = _decode(raw, path)
    del raw
    docs: list[str] = []
    records: list[tuple[str, str]] = []
    first: tuple[str, int] | None = None  # (kind, line) of the first record
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(where, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(where, f"expected a JSON object, got {type(obj).__name__}")
        if "text" in obj:
            kind = "text"
            fields = ("text",)
        elif "prompt" in obj or "completion" in obj:
            kind = "records"
            fields = ("prompt", "completion")
        else:
            raise DataError(where, "missing field 'text' (or the pair 'prompt' + 'completion')")
        for f in fields:
            if f not in obj:
                raise DataError(
                    where, f"missing field '{f}' (a record needs both 'prompt' and 'completion')"
                )
            if not isinstance(obj[f], str):
                raise DataError(where, f"field '{f}' must be a string, got {type(obj[f]).__name__}")
        if first is None:
            first = (kind, lineno)
        elif kind != first[0]:
            raise DataError(
                where,
                f"mixes a {'text' if kind == 'text' else 'prompt/completion'} record with "
                f"{'text' if first[0] == 'text' else 'prompt/completion'} records (first at line "
                f"{first[1]}); a .jsonl file holds one kind",
            )
        if kind == "text":
            docs.append(obj["text"])
        else:
            records.append((obj["prompt"], obj["completion"]))
    if first is None:
        raise DataError(str(path), "file has no records (only blank lines)")
    if first[0] == "text":
        joined = "\n".join(docs)
        if not joined.strip():
            raise DataError(str(path), "every 'text' field is empty")
        return _text_corpus(joined, fractions, label, str(path))
    return _split_records(records, fractions, label, str(path))


def _split_records(records: list[tuple[str, str]], fractions: tuple[float, float, float], label: str,
                   where: str) -> Corpus:
    n = len(records)
    c1 = round(n * fractions[0])
    c2 = round(n * (fractions[0] + fractions[1]))
    sizes = {"train": c1, "val": c2 - c1, "test": n - c2}
    empty = [s for s, k in sizes.items() if k <= 0]
    if empty:
        raise DataError(
            where,
            f"corpus too small for the split {tuple(fractions)}: the {' and '.join(empty)} split "
            f"would be empty ({n} records) - use more records or change data.split",
        )
    parts = {"train": records[:c1], "val": records[c1:c2], "test": records[c2:]}
    return Corpus("records", label, records=parts, n_lines={s: len(r) for s, r in parts.items()})


def check_vocab_size(requested: int | None, available: int, what: str) -> None:
    """SpecError when a char/word vocabulary asks for more symbols than the corpus has."""
    if requested is not None and requested > available + 4:
        raise SpecError(
            "data.vocab_size",
            f"{requested} is too large: the train split has only {available} distinct {what} "
            f"(at most {available + 4} with the 4 special tokens); lower it or leave it unset",
        )
