"""Fetching named corpora: download -> verify (sha256, length) -> extract -> install in the cache.

See :mod:`lmbench.data.corpora` for the registry and the cache layout. Nothing partial is ever
left in the cache: downloads and extraction happen in a temporary folder beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lmbench.data.corpora import (  # noqa: F401
    _CHUNK,
    _TIMEOUT,
    _USER_AGENT,
    DATASETS,
    LAYOUT_VERSION,
    MANIFEST,
    SPLITS,
    DatasetInfo,
    Download,
    NamedSplits,
    RangeSplits,
    data_dir,
    dataset_path,
    is_cached,
    is_complete,
    split_files,
)
from lmbench.errors import DataError

log = logging.getLogger(__name__)

Fetch = Callable[..., None]  # (url, dest, timeout=...) -> None; raises OSError when it cannot


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class TruncatedDownload(OSError):
    """The server closed the connection before sending the bytes it announced."""


def download(url: str, dest: Path, timeout: float = _TIMEOUT) -> None:
    """Stream ``url`` into ``dest``; OSError (or an HTTPException) when it cannot be fetched."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    got = 0
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(dest, "wb") as f:
        announced = resp.headers.get("Content-Length")
        while chunk := resp.read(_CHUNK):
            f.write(chunk)
            got += len(chunk)
    # http.client returns a short body without complaint when the connection drops
    if announced is not None and announced.isdigit() and got != int(announced):
        raise TruncatedDownload(f"connection closed after {got} of {announced} bytes")


def ensure_dataset(name: str, fetch: Fetch = download) -> Path:
    """The verified local copy of a named dataset - its file, or its folder of extracted
    splits - downloading it when needed. Every failure is one :class:`DataError`."""
    info = DATASETS[name]
    if info.splits is None:
        return _ensure_file(info, fetch)
    return _ensure_folder(info, fetch)


def read_splits(info: DatasetInfo, fetch: Fetch = download) -> dict[str, str]:
    """The texts of a pre-split dataset's splits, downloading and extracting it when needed."""
    ensure_dataset(info.name, fetch)
    texts = {}
    for split, path in split_files(info).items():
        raw = path.read_bytes()
        try:  # byte level: one character per byte (latin-1), so a char tokenizer models bytes
            text = raw.decode("latin-1" if info.byte_level else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(str(path), f"not valid UTF-8 at byte {e.start}") from None
        # pre-tokenised: the last line ends in EOS too, as every other line does
        texts[split] = text + "\n" if info.pretokenized and text[-1:] != "\n" else text
    return texts


def _how_to(info: DatasetInfo, wanted: list[tuple[Download, Path]]) -> str:
    steps = "; ".join(f"download {d.url} and save it as {p} (its sha256 must be {d.sha256})"
                      for d, p in wanted)
    held = ", ".join(f"{info.name}/{d.filename}" for d, _ in wanted)
    return f"{steps}; or point $LMBENCH_DATA_DIR at a folder holding {held}"


def _problem(path: Path, d: Download) -> str | None:
    """None when ``path`` holds the verified file, else what is wrong with it."""
    if not path.is_file():
        return "is missing"
    got = sha256_file(path)
    if got == d.sha256:
        return None
    return f"has sha256 {got}, expected {d.sha256} (corrupted or a different file)"


def _fetch_verified(d: Download, part: Path, target: Path, problem: str, how_to: str,
                    fetch: Fetch) -> None:
    """Download ``d`` into ``part`` and check its size and sha256; DataError naming ``target``."""
    log.info("downloading %s (%.1f MB) from %s", d.filename, d.size / 1e6, d.url)
    where = str(target)
    try:
        fetch(d.url, part, timeout=_TIMEOUT)
    except (TruncatedDownload, http.client.IncompleteRead) as e:
        raise DataError(where, f"{problem}, and the download from {d.url} is truncated "
                        f"({_one_line(e)}); {how_to}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DataError(where, f"{problem} and could not be downloaded ({_one_line(e)}); "
                        f"{how_to}") from None
    n = part.stat().st_size
    if d.size and n != d.size:
        raise DataError(where, f"{problem}, and the download from {d.url} is {n} bytes long, "
                        f"expected {d.size} (a truncated download or a different file); {how_to}")
    got = sha256_file(part)
    if got != d.sha256:
        raise DataError(where, f"{problem}, and the download from {d.url} has sha256 {got}, "
                        f"expected {d.sha256} (corrupted or a different file); {how_to}")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _ensure_file(info: DatasetInfo, fetch: Fetch) -> Path:
    """A one-file dataset: the file itself, checked against its sha256 on every use."""
    path = dataset_path(info.name)
    d = info.downloads[0]
    problem = _problem(path, d)
    if problem is None:
        return path
    how_to = _how_to(info, [(d, path)])
    made = not path.parent.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{d.filename}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise DataError(
            str(path), f"{problem} and cannot be written there ({e}); {how_to}"
        ) from None
    tmp = Path(name)
    try:
        _fetch_verified(d, tmp, path, problem, how_to, fetch)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        if made and not path.exists():  # a failed first download leaves no empty folder
            with contextlib.suppress(OSError):
                path.parent.rmdir()
    return path


def _ensure_folder(info: DatasetInfo, fetch: Fetch) -> Path:
    """A pre-split dataset: build it in a temporary folder, then rename that into place."""
    folder = data_dir() / info.name
    if is_complete(info, folder):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{info.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as e:
        wanted = [(d, folder / d.filename) for d in info.downloads]
        raise DataError(str(folder), f"cannot be written ({e}); {_how_to(info, wanted)}") from None
    try:
        files = _gather(info, folder, tmp / ".downloads", fetch)
        sizes = _extract(info, files, tmp, folder)
        shutil.rmtree(tmp / ".downloads")  # the archives are not kept
        manifest = {
            "format": LAYOUT_VERSION,
            "downloads": {d.filename: d.sha256 for d in info.downloads},
            "splits": sizes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _install(info, tmp, folder)
    except OSError as e:  # a full disk, a permission: still one error naming the folder
        raise DataError(str(folder), f"could not be extracted there ({_one_line(e)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _gather(info: DatasetInfo, folder: Path, into: Path, fetch: Fetch) -> dict[str, Path]:
    """Each download, verified: a copy saved by hand in ``folder``, else fetched ``into``."""
    into.mkdir()
    out: dict[str, Path] = {}
    downloads = info.downloads
    for i, d in enumerate(downloads):
        placed = folder / d.filename
        problem = _problem(placed, d)
        if problem is None:
            out[d.filename] = placed
            continue
        # name every file still to fetch, so one message says all there is to do offline
        wanted = [(d, placed)] + [(x, folder / x.filename) for x in downloads[i + 1:]
                                  if not (folder / x.filename).is_file()]
        _fetch_verified(d, into / d.filename, placed, problem, _how_to(info, wanted), fetch)
        out[d.filename] = into / d.filename
    return out


def _extract(info: DatasetInfo, files: dict[str, Path], out: Path,
             folder: Path) -> dict[str, int]:
    """Write the split files into ``out``; returns their sizes in bytes."""
    dest = {s: out / p.name for s, p in split_files(info).items()}
    layout = info.splits
    if isinstance(layout, NamedSplits):
        for split, path in dest.items():
            name = getattr(layout, split)
            if name in files:  # the split is a download of its own
                shutil.copyfile(files[name], path)
            else:
                with _member(files[info.filename], name, folder / info.filename) as src, \
                        open(path, "wb") as f:
                    shutil.copyfileobj(src, f, _CHUNK)
    else:
        assert isinstance(layout, RangeSplits)
        where = f"{folder / info.filename}:{layout.member}"
        with _member(files[info.filename], layout.member, folder / info.filename) as src:
            raw = src.read()
        try:
            data = raw if layout.unit == "byte" else raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(where, f"not valid UTF-8 at byte {e.start}") from None
        del raw
        if len(data) != layout.total:
            raise DataError(where, f"has {len(data)} {layout.unit}s, expected {layout.total}")
        start = 0
        for split, n in zip(SPLITS, layout.lengths, strict=True):
            piece = data[start:start + n]
            dest[split].write_bytes(piece.encode("utf-8") if isinstance(piece, str) else piece)
            start += n
    return {s: p.stat().st_size for s, p in dest.items()}


@contextmanager
def _member(archive: Path, name: str, shown: Path) -> Iterator[IO[bytes]]:
    """A zip member opened for reading; an unreadable archive or member (a bad CRC, a missing
    name) is a DataError naming ``shown``, the path the user knows."""
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(name) as f:
            yield f
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError) as e:
        raise DataError(str(shown), f"cannot read {name} ({_one_line(e)})") from None


def _install(info: DatasetInfo, tmp: Path, folder: Path) -> None:
    """Rename the finished ``tmp`` to ``folder``. A folder of files saved by hand (or a stale
    copy) is moved aside first; a complete copy renamed there meanwhile by another process wins."""
    try:
        os.rename(tmp, folder)
        return
    except OSError:
        if is_complete(info, folder):
            return
    old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except OSError:
        os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
