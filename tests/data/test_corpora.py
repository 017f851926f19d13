"""Tests of the named-corpus machinery (lmbench.data.corpora): download -> verify -> extract.

Every download goes to a real HTTP server on 127.0.0.1 started here, serving small archives built
in the test; a guard makes any other URL fail the test, so nothing is fetched from the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import re
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lmbench.data.corpora as corpora
import lmbench.data.sources as sources_mod
from lmbench.config.spec import DataSpec
from lmbench.data import EOS, UNK, fetch, list_datasets, load_corpus, load_tokenizer, prepare_data
from lmbench.data.corpora import DATASETS, DatasetInfo, Download, NamedSplits, RangeSplits
from lmbench.errors import DataError

# a miniature wikitext: leading spaces, blank lines, the corpus's own <unk>
WIKI = {
    "train": " = Title = \n \n the cat sat on the <unk> . \n the dog sat . \n",
    "val": " the cat <unk> . \n",
    "test": " a dog sat on the mat . \n",  # "a" and "mat" are not in train
}
EXTRACTED = [corpora.MANIFEST, "test.txt", "train.txt", "val.txt"]  # a pre-split cache folder
MEMBERS = {"train": "mini/wiki.train.tokens", "val": "mini/wiki.valid.tokens",
           "test": "mini/wiki.test.tokens"}


class Server:
    """``routes[path] = (body, mode)``; mode ``ok``, ``drop`` (announces the whole body, sends
    half, closes) or ``short`` (announces and sends half)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, mode = routes[self.path]
                sent = body if mode == "ok" else body[: len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body if mode == "drop" else sent)))
                self.end_headers()
                self.wfile.write(sent)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # a short poll interval: shutdown() waits for it at every test's teardown
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes, mode: str = "ok") -> str:
        self.routes[path] = (body, mode)
        return self.url(path)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Private data and token caches; downloads only from 127.0.0.1."""
    monkeypatch.setenv("LMBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LMBENCH_CACHE_DIR", str(tmp_path / "tokens"))

    def local_only(url, dest, timeout=30.0):
        assert url.startswith("http://127.0.0.1:"), f"a test tried to download {url}"
        fetch.download(url, dest, timeout=timeout)

    monkeypatch.setattr(sources_mod, "_download", local_only)
    return tmp_path / "data"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def wiki_zip() -> bytes:
    return make_zip({MEMBERS[s]: WIKI[s].encode() for s in WIKI})


def add(monkeypatch, info: DatasetInfo) -> DatasetInfo:
    """Register a test-only entry (http://127.0.0.1 is not https, so not via register_dataset)."""
    assert [p for p in corpora.check_entry(info) if "https" not in p] == []
    monkeypatch.setitem(DATASETS, info.name, info)
    return info


def wiki_entry(monkeypatch, url: str, body: bytes, name: str = "mini-wiki") -> DatasetInfo:
    return add(monkeypatch, DatasetInfo(
        name=name, url=url, sha256=sha(body), filename="mini-wiki.zip", description="test",
        licence="test", size=len(body), splits=NamedSplits(*MEMBERS.values()), pretokenized=True,
    ))


def dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def reference_ids(text: str, vocab: dict[str, int]) -> list[int]:
    """word_language_model's encoding: each line's words, then <eos>; <unk> is the unk id."""
    out: list[int] = []
    for line in text.splitlines():
        out += [vocab.get(w, UNK) for w in line.split()] + [EOS]
    return out


# ---------------------------------------------------------------------------------------------


def test_zip_download_extract_and_word_level_encoding(server, data_dir, monkeypatch):
    body = wiki_zip()
    wiki_entry(monkeypatch, server.serve("/mini-wiki.zip", body), body)
    corpus = load_corpus(DataSpec(source="mini-wiki"))
    assert corpus.texts == WIKI and corpus.pretokenized and corpus.n_lines["train"] == 4
    assert contents(data_dir) == ["mini-wiki"]  # no temporary folders or parts left
    assert contents(data_dir / "mini-wiki") == EXTRACTED
    # pre-split: data.split does not apply, and the cached copy is used (one download in all)
    assert load_corpus(DataSpec(source="mini-wiki", split=(0.5, 0.25, 0.25))).texts == WIKI
    assert server.hits == ["/mini-wiki.zip"]
    row = {d["name"]: d for d in list_datasets()}["mini-wiki"]
    assert row["cached"] and row["size"] == len(body) and row["licence"] == "test"

    data = prepare_data(DataSpec(source="mini-wiki", tokenizer="word"))
    tok = data.tokenizer
    vocab = {tok.id_to_piece(i): i for i in range(4, tok.vocab_size)}
    train_words = {w for line in WIKI["train"].splitlines() for w in line.split()} - {"<unk>"}
    assert set(vocab) == train_words  # from train only; neither <unk> nor the line end is a word
    for split, text in WIKI.items():
        got = np.asarray(data.splits[split]).tolist()
        assert got == reference_ids(text, vocab), split
        assert got.count(EOS) == text.count("\n")
    assert np.asarray(data.splits["val"]).tolist()[2] == UNK  # the corpus's own <unk>
    assert data.stats["test"]["n_unk"] == 2  # "a" and "mat", unseen in train
    assert tok.decode(data.splits["val"]) == "the cat <unk> .\n"
    again = load_tokenizer(data.cache_path / "tokenizer")  # the flag survives the cache
    assert again.encode("the <unk>\n") == [vocab["the"], UNK, EOS]


def test_ptb_style_downloads_are_the_splits(server, monkeypatch):
    files = {s: WIKI[s].encode() for s in WIKI}
    names = {s: f"p.{s}.txt" for s in files}
    first, *rest = [Download(server.serve(f"/{names[s]}", files[s]), sha(files[s]),
                             len(files[s]), names[s]) for s in ("train", "val", "test")]
    add(monkeypatch, DatasetInfo(
        name="mini-ptb", url=first.url, sha256=first.sha256, filename=first.filename,
        description="test", licence="test", size=first.size,
        splits=NamedSplits(*names.values()), pretokenized=True, extra=tuple(rest),
    ))
    assert load_corpus(DataSpec(source="mini-ptb")).texts == WIKI
    assert sorted(server.hits) == sorted(f"/{n}" for n in names.values())


@pytest.mark.parametrize("damage", ["corrupt", "drop", "short"])
def test_bad_download_is_one_error_and_leaves_nothing(server, data_dir, monkeypatch, damage):
    body = wiki_zip()
    served = bytes(b ^ 0xFF for b in body) if damage == "corrupt" else body
    url = server.serve("/mini-wiki.zip", served, "ok" if damage == "corrupt" else damage)
    info = wiki_entry(monkeypatch, url, body)
    with pytest.raises(DataError) as ei:
        load_corpus(DataSpec(source="mini-wiki"))
    err = ei.value
    assert err.where == str(data_dir / "mini-wiki" / "mini-wiki.zip")
    assert url in err.reason and info.sha256 in err.reason and "\n" not in str(err)
    assert ("sha256" if damage == "corrupt" else "truncated") in err.reason
    assert contents(data_dir) == []


def test_unreadable_archive_leaves_nothing(server, data_dir, monkeypatch):
    body = make_zip({"mini/other.txt": b"x\n"})  # verified, but without the named members
    wiki_entry(monkeypatch, server.serve("/mini-wiki.zip", body), body)
    with pytest.raises(DataError, match="cannot read mini/wiki.train.tokens"):
        load_corpus(DataSpec(source="mini-wiki"))
    assert contents(data_dir) == []


def test_offline_names_the_files_to_place_by_hand(data_dir, monkeypatch):
    body = wiki_zip()
    info = wiki_entry(monkeypatch, f"http://127.0.0.1:{dead_port()}/mini-wiki.zip", body)
    target = data_dir / "mini-wiki" / "mini-wiki.zip"
    with pytest.raises(DataError) as ei:
        load_corpus(DataSpec(source="mini-wiki"))
    msg = str(ei.value)
    assert "\n" not in msg and "could not be downloaded" in msg
    assert f"download {info.url} and save it as {target} (its sha256 must be {info.sha256})" in msg
    assert contents(data_dir) == []

    target.parent.mkdir(parents=True)  # placed by hand: used, no network needed
    target.write_bytes(body)
    assert load_corpus(DataSpec(source="mini-wiki")).texts == WIKI
    assert contents(data_dir / "mini-wiki") == EXTRACTED  # the archive is not kept
    assert contents(data_dir) == ["mini-wiki"]  # nor the folder it was placed in, moved aside


def test_offline_multi_file_message_names_every_file(data_dir, monkeypatch):
    port = dead_port()
    files = [Download(f"http://127.0.0.1:{port}/p.{s}.txt", "0" * 64, 10, f"p.{s}.txt")
             for s in ("train", "val", "test")]
    add(monkeypatch, DatasetInfo(
        name="gone", url=files[0].url, sha256=files[0].sha256, filename=files[0].filename,
        description="test", licence="test", size=10,
        splits=NamedSplits(*(f.filename for f in files)), extra=tuple(files[1:]),
    ))
    with pytest.raises(DataError) as ei:
        load_corpus(DataSpec(source="gone"))
    for f in files:
        assert f"save it as {data_dir / 'gone' / f.filename}" in str(ei.value)
    assert contents(data_dir) == []


def range_entry(monkeypatch, server, name: str, member: bytes, unit: str, lengths,
                total) -> DatasetInfo:
    body = make_zip({"mini8": member})
    return add(monkeypatch, DatasetInfo(
        name=name, url=server.serve(f"/{name}.zip", body), sha256=sha(body),
        filename=f"{name}.zip", description="test", licence="test", size=len(body),
        splits=RangeSplits("mini8", lengths, unit, total),
    ))


def test_byte_ranges(server, monkeypatch):
    raw = bytes(range(256)) * 3 + b"line\n" * 20  # every byte value, invalid UTF-8 included
    lengths = (700, 100, len(raw) - 800)
    range_entry(monkeypatch, server, "mini8-byte", raw, "byte", lengths, len(raw))
    corpus = load_corpus(DataSpec(source="mini8-byte"))
    cuts = [0, 700, 800, len(raw)]
    for i, split in enumerate(("train", "val", "test")):
        assert corpus.texts[split].encode("latin-1") == raw[cuts[i]:cuts[i + 1]]
    data = prepare_data(DataSpec(source="mini8-byte", tokenizer="char"))
    assert [data.stats[s]["n_tokens"] for s in ("train", "val", "test")] == list(lengths)


def test_char_ranges_count_characters_not_bytes(server, data_dir, monkeypatch):
    text = "héllo wörld ✓ " * 50
    range_entry(monkeypatch, server, "mini8-char", text.encode(), "char", (500, 100, 100),
                len(text))
    corpus = load_corpus(DataSpec(source="mini8-char"))
    assert corpus.texts == {"train": text[:500], "val": text[500:600], "test": text[600:]}

    # a file whose length is not the declared total: one error, nothing cached
    range_entry(monkeypatch, server, "mini8-bad", text.encode(), "char", (500, 100, 101),
                len(text) + 1)
    with pytest.raises(DataError, match=f"has {len(text)} chars, expected {len(text) + 1}"):
        load_corpus(DataSpec(source="mini8-bad"))
    assert contents(data_dir) == ["mini8-char"]


# ---------------------------------------------------------------------------------------------
# the registry


STANDARD = {"tinyshakespeare", "wikitext-2", "wikitext-103", "ptb", "enwik8", "text8"}


def test_every_registry_entry_is_complete():
    assert set(DATASETS) >= STANDARD
    for info in DATASETS.values():
        assert corpora.check_entry(info) == [], info.name
        assert info.licence.strip() and info.description.strip()
        for d in info.downloads:
            assert d.url.startswith("https://") and d.url.rsplit("/", 1)[1] == d.filename
            assert re.fullmatch(r"[0-9a-f]{64}", d.sha256) and d.size > 0
        if isinstance(info.splits, RangeSplits):
            assert info.filename.endswith(".zip") and sum(info.splits.lengths) == info.splits.total
        elif isinstance(info.splits, NamedSplits):
            names = [info.splits.train, info.splits.val, info.splits.test]
            assert len(set(names)) == 3
            assert "train" in names[0] and "valid" in names[1] and "test" in names[2]
    for name in ("wikitext-2", "wikitext-103", "ptb"):
        assert DATASETS[name].pretokenized and isinstance(DATASETS[name].splits, NamedSplits)
    for name in ("enwik8", "text8"):
        r = DATASETS[name].splits
        assert isinstance(r, RangeSplits) and not DATASETS[name].pretokenized
        assert r.lengths == (90_000_000, 5_000_000, 5_000_000) and r.total == 100_000_000
    assert DATASETS["enwik8"].byte_level and not DATASETS["text8"].byte_level
    assert {d.filename for d in DATASETS["ptb"].downloads} == {
        "ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"}
    rows = {d["name"]: d for d in list_datasets()}
    for name in STANDARD | {"synthetic", "synthetic-pairs"}:
        assert rows[name]["licence"] and "size" in rows[name]
    assert rows["ptb"]["size"] == sum(d.size for d in DATASETS["ptb"].downloads)


def test_register_dataset_rejects_bad_entries():
    good = DATASETS["enwik8"]
    bad = [
        {"url": "http://mattmahoney.net/dc/enwik8.zip"},
        {"sha256": "abc"},
        {"licence": ""},
        {"size": 0},
        {"splits": RangeSplits("enwik8", (90, 5, 4), "byte", 100)},
        {"splits": NamedSplits("a", "a", "b")},
        {"name": "synthetic"},
    ]
    for change in bad:
        info = dataclasses.replace(good, **change)
        with pytest.raises(ValueError):
            corpora.register_dataset(info)
    assert DATASETS["enwik8"] is good
