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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class TruncatedDownload(OSError):
    """The server closed the connection before sending the bytes it announced."""


def download(url: str, dest: Path, timeout: float = _TIMEOUT) -> None:
    """Stream ``url`` into ``dest``; OSError (or an HTTPException) when it cannot be fetched."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    got = 0
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(dest, "wb") as handle:
        announced = resp.headers.get("Content-Length")
        while chunk := resp.read(_CHUNK):
            handle.write(chunk)
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
        except UnicodeDecodeError as error:
            raise DataError(str(path), f"not valid UTF-8 at byte {error.start}") from None
        # pre-tokenised: the last line ends in EOS too, as every other line does
        texts[split] = text + "\n" if info.pretokenized and text[-1:] != "\n" else text
    return texts


def _how_to(info: DatasetInfo, wanted: list[tuple[Download, Path]]) -> str:
    steps = "; ".join(f"download {d.url} and save it as {p} (its sha256 must be {d.sha256})"
                      for d, p in wanted)
    held = ", ".join(f"{info.name}/{d.filename}" for d, _ in wanted)
    return f"{steps}; or point $LMBENCH_DATA_DIR at a folder holding {held}"


def _problem(path: Path, entry: Download) -> str | None:
    """None when ``path`` holds the verified file, else what is wrong with it."""
    if not path.is_file():
        return "is missing"
    got = sha256_file(path)
    if got == entry.sha256:
        return None
    return f"has sha256 {got}, expected {entry.sha256} (corrupted or a different file)"


def _fetch_verified(entry: Download, part: Path, target: Path, problem: str, how_to: str,
                    fetch: Fetch) -> None:
    """Download ``entry`` into ``part`` and check its size and sha256; DataError naming ``target``."""
    log.info("downloading %s (%.1f MB) from %s", entry.filename, entry.size / 1e6, entry.url)
    where = str(target)
    try:
        fetch(entry.url, part, timeout=_TIMEOUT)
    except (TruncatedDownload, http.client.IncompleteRead) as error:
        raise DataError(where, f"{problem}, and the download from {entry.url} is truncated "
                        f"({_one_line(error)}); {how_to}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise DataError(where, f"{problem} and could not be downloaded ({_one_line(error)}); "
                        f"{how_to}") from None
    n_bytes = part.stat().st_size
    if entry.size and n_bytes != entry.size:
        raise DataError(where, f"{problem}, and the download from {entry.url} is {n_bytes} bytes long, "
                        f"expected {entry.size} (a truncated download or a different file); {how_to}")
    got = sha256_file(part)
    if got != entry.sha256:
        raise DataError(where, f"{problem}, and the download from {entry.url} has sha256 {got}, "
                        f"expected {entry.sha256} (corrupted or a different file); {how_to}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _ensure_file(info: DatasetInfo, fetch: Fetch) -> Path:
    """A one-file dataset: the file itself, checked against its sha256 on every use."""
    path = dataset_path(info.name)
    entry = info.downloads[0]
    problem = _problem(path, entry)
    if problem is None:
        return path
    how_to = _how_to(info, [(entry, path)])
    made = not path.parent.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise DataError(
            str(path), f"{problem} and cannot be written there ({error}); {how_to}"
        ) from None
    tmp = Path(name)
    try:
        _fetch_verified(entry, tmp, path, problem, how_to, fetch)
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
    except OSError as error:
        wanted = [(d, folder / d.filename) for d in info.downloads]
        raise DataError(str(folder), f"cannot be written ({error}); {_how_to(info, wanted)}") from None
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
    except OSError as error:  # a full disk, a permission: still one error naming the folder
        raise DataError(str(folder), f"could not be extracted there ({_one_line(error)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _gather(info: DatasetInfo, folder: Path, into: Path, fetch: Fetch) -> dict[str, Path]:
    """Each download, verified: a copy saved by hand in ``folder``, else fetched ``into``."""
    into.mkdir()
    out: dict[str, Path] = {}
    downloads = info.downloads
    for index, entry in enumerate(downloads):
        placed = folder / entry.filename
        problem = _problem(placed, entry)
        if problem is None:
            out[entry.filename] = placed
            continue
        # name every file still to fetch, so one message says all there is to do offline
        wanted = [(entry, placed)] + [(x, folder / x.filename) for x in downloads[index + 1:]
                                  if not (folder / x.filename).is_file()]
        _fetch_verified(entry, into / entry.filename, placed, problem, _how_to(info, wanted), fetch)
        out[entry.filename] = into / entry.filename
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
                        open(path, "wb") as handle:
                    shutil.copyfileobj(src, handle, _CHUNK)
    else:
        assert isinstance(layout, RangeSplits)
        where = f"{folder / info.filename}:{layout.member}"
        with _member(files[info.filename], layout.member, folder / info.filename) as src:
            raw = src.read()
        try:
            data = raw if layout.unit == "byte" else raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(where, f"not valid UTF-8 at byte {error.start}") from None
        del raw
        if len(data) != layout.total:
            raise DataError(where, f"has {len(data)} {layout.unit}s, expected {layout.total}")
        start = 0
        for split, length in zip(SPLITS, layout.lengths, strict=True):
            piece = data[start:start + length]
            dest[split].write_bytes(piece.encode("utf-8") if isinstance(piece, str) else piece)
            start += length
    return {s: p.stat().st_size for s, p in dest.items()}


@contextmanager
def _member(archive: Path, name: str, shown: Path) -> Iterator[IO[bytes]]:
    """A zip member opened for reading; an unreadable archive or member (a bad CRC, a missing
    name) is a DataError naming ``shown``, the path the user knows."""
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(name) as handle:
            yield handle
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError) as error:
        raise DataError(str(shown), f"cannot read {name} ({_one_line(error)})") from None


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
