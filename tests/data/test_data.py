"""Tests of lmbench.data: sources, splits, tokenizers, the token cache and batching."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import need

import lmbench.data.prepare as prepare_mod
import lmbench.data.sources as sources_mod
from lmbench.config.spec import DataSpec
from lmbench.data import (
    BOS,
    EOS,
    PAD,
    UNK,
    list_datasets,
    load_corpus,
    load_tokenizer,
    prepare_data,
)
from lmbench.data.batching import (
    RandomTextBatcher,
    RecordSplit,
    TextBatcher,
    record_eval_batches,
    text_eval_batches,
    text_n_targets,
)
from lmbench.data.synthetic import generate_lines
from lmbench.data.tokenizers import train_tokenizer
from lmbench.errors import DataError, SpecError

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TINY = SHARED_DATA / "tinyshakespeare" / "input.txt"
TINY_SHA = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Private cache/data dirs, and no test ever touches the network."""
    monkeypatch.setenv("LMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LMBENCH_DATA_DIR", str(tmp_path / "datasets"))

    def offline(url, dest, timeout=30.0):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(sources_mod, "_download", offline)


@pytest.fixture
def tiny(tmp_path) -> Path:
    """tinyshakespeare pre-seeded in $LMBENCH_DATA_DIR."""
    need(TINY.is_file(), f"shared tinyshakespeare copy not found at {TINY}")
    dest = tmp_path / "datasets" / "tinyshakespeare" / "input.txt"
    dest.parent.mkdir(parents=True)
    shutil.copy(TINY, dest)
    return dest


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def lines_text(n: int = 100) -> str:
    return "".join(f"line {i:04d} says hello to line {i + 1:04d}\n" for i in range(n))


# ---------------------------------------------------------------------------------------------
# sources and splits


def test_synthetic_splits_contiguous_deterministic_and_nll():
    spec = DataSpec(source="synthetic", size=20_000, seed=3, split=(0.8, 0.1, 0.1))
    a, b = load_corpus(spec), load_corpus(spec)
    assert a.texts == b.texts and a.nll == b.nll
    lines, nll = generate_lines(20_000, 3)
    full = "\n".join(lines) + "\n"
    assert a.texts["train"] + a.texts["val"] + a.texts["test"] == full
    n1, n2 = a.n_lines["train"], a.n_lines["train"] + a.n_lines["val"]
    assert a.texts["train"] == "\n".join(lines[:n1]) + "\n"
    assert a.texts["val"] == "\n".join(lines[n1:n2]) + "\n"
    assert a.nll["train"] == pytest.approx(nll[:n1].sum())
    assert a.nll["val"] == pytest.approx(nll[n1:n2].sum())
    assert a.nll["test"] == pytest.approx(nll[n2:].sum())
    longest = max(map(len, lines)) + 1
    assert abs(len(a.texts["train"]) - 0.8 * len(full)) <= longest
    assert abs(len(a.texts["val"]) - 0.1 * len(full)) <= 2 * longest
    assert load_corpus(DataSpec(size=20_000, seed=4)).texts != a.texts


def test_text_file_split_at_line_boundaries(tmp_path):
    text = lines_text(200)
    p = write(tmp_path / "c.txt", text)
    c = load_corpus(DataSpec(source=str(p), split=(0.7, 0.2, 0.1)))
    assert c.kind == "text"
    parts = [c.texts[s] for s in ("train", "val", "test")]
    assert "".join(parts) == text
    assert all(part and part.endswith("\n") for part in parts)
    assert [c.n_lines[s] for s in ("train", "val", "test")] == [140, 40, 20]


def test_folder_sorted_and_joined(tmp_path):
    write(tmp_path / "d" / "b.txt", lines_text(50))
    write(tmp_path / "d" / "a.txt", "first file\n" * 50)
    write(tmp_path / "d" / "ignored.md", "not text\n")
    c = load_corpus(DataSpec(source=str(tmp_path / "d")))
    assert "".join(c.texts.values()) == "first file\n" * 50 + "\n" + lines_text(50)


def test_presplit_files(tmp_path):
    paths = {
        s: write(tmp_path / f"{s}.txt", f"{s} text here\n" * 5) for s in ("train", "val", "test")
    }
    spec = DataSpec(splits={s: str(p) for s, p in paths.items()}, tokenizer="char")
    c = load_corpus(spec)
    assert c.texts == {s: f"{s} text here\n" * 5 for s in paths}
    data = prepare_data(spec)
    assert data.tokenizer.decode(np.asarray(data.splits["train"])) == "train text here\n" * 5
    assert data.stats["val"]["n_unk"] == 10  # 'v' and 'l' never occur in train
    write(tmp_path / "val.txt", "changed\n" * 5)
    assert prepare_data(spec).fingerprint != data.fingerprint


def test_jsonl_text_and_records(tmp_path):
    docs = [{"text": f"document {i}\nsecond line"} for i in range(30)]
    p = write(tmp_path / "t.jsonl", "\n".join(json.dumps(d) for d in docs) + "\n\n")
    c = load_corpus(DataSpec(source=str(p)))
    assert c.kind == "text"
    assert "".join(c.texts.values()) == "\n".join(d["text"] for d in docs)

    recs = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(20)]
    p = write(tmp_path / "r.jsonl", "\n".join(json.dumps(r) for r in recs))
    c = load_corpus(DataSpec(source=str(p), split=(0.5, 0.25, 0.25)))
    assert c.kind == "records"
    assert c.records["train"] == [(f"q{i}", f"a{i}") for i in range(10)]
    assert c.records["val"] == [(f"q{i}", f"a{i}") for i in range(10, 15)]
    assert c.records["test"] == [(f"q{i}", f"a{i}") for i in range(15, 20)]


# ---------------------------------------------------------------------------------------------
# tokenizers

TRICKY = (
    "Hello,  World!\n\n\tindented line with trailing space \n"
    " leading space and ünïcödé ✓ 中文\n"
    "a b c\n"
)


def sp_text() -> str:
    lines, _ = generate_lines(6000, 1)
    return "\n".join(lines) + "\n" + TRICKY * 3


@pytest.mark.parametrize("kind", ["char", "bpe", "unigram"])
def test_lossless_roundtrip(kind, tmp_path):
    text = sp_text()
    tok = train_tokenizer(kind, [text], None if kind == "char" else 200)
    ids = tok.encode(text)
    assert UNK not in ids and not {BOS, EOS, PAD} & set(ids)
    assert tok.decode(ids) == text
    if kind != "char":  # SentencePiece encodes chunk by chunk there; char's encode *is* encode_array
        assert tok.encode_array(text).tolist() == ids
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    assert [tok.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    tok.save(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again.kind == kind and again.vocab_size == tok.vocab_size
    assert again.encode(text) == ids


def test_word_tokenizer_roundtrip_and_newline(tmp_path):
    lines, _ = generate_lines(5000, 2)
    text = "\n".join(lines) + "\n\n"
    tok = train_tokenizer("word", [text], None)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    nl = tok.encode("\n")
    assert len(nl) == 1 and nl[0] >= 4
    assert tok.encode("a  b") == tok.encode("a b")  # documented: spaces are not kept
    assert tok.encode("zzzunseen") == [UNK]
    tok.save(tmp_path / "w")
    assert load_tokenizer(tmp_path / "w").encode(text) == ids


def test_vocab_caps_most_frequent_first():
    tok = train_tokenizer("char", ["aaaabbbcc\n"], 7)
    assert tok.vocab_size == 7
    assert tok.encode("abc\n") == [4, 5, 6, UNK]
    word = train_tokenizer("word", ["x x x y y z\n"], 6)
    assert word.encode("x y z") == [4, 5, UNK]


def test_tokenizer_trained_on_train_only(tmp_path):
    text = lines_text(90) + "the Zebra line\n" * 10
    p = write(tmp_path / "c.txt", text)
    data = prepare_data(DataSpec(source=str(p), tokenizer="char", split=(0.8, 0.1, 0.1)))
    assert data.tokenizer.encode("Z") == [UNK]
    assert data.stats["train"]["n_unk"] == 0
    train_chars = set(data.tokenizer.decode(np.asarray(data.splits["train"])))
    test_text = data.tokenizer.decode(np.asarray(data.splits["test"]))
    assert "Z" not in train_chars and "Z" in text[-len(test_text) :]
    assert (
        data.stats["test"]["n_unk"]
        == sum(ch not in train_chars for ch in text[-len(test_text) :])
        > 0
    )
    assert data.floor is None  # not synthetic


# ---------------------------------------------------------------------------------------------
# cache


def test_cache_hit_does_not_retokenise(monkeypatch, tmp_path):
    spec = DataSpec(size=5000, tokenizer="bpe", vocab_size=120)
    first = prepare_data(spec)
    assert first.cache_path.parent == tmp_path / "cache"
    assert sorted(p.name for p in first.cache_path.iterdir()) == [
        "meta.json",
        "test.npy",
        "tokenizer",
        "train.npy",
        "val.npy",
    ]
    assert isinstance(first.splits["train"], np.memmap)
    assert first.splits["train"].dtype == np.uint16

    def boom(*a, **k):
        raise AssertionError("should have used the cache")

    import lmbench.data.kinds as kinds_mod

    for name in ("load_corpus", "train_tokenizer"):
        monkeypatch.setattr(prepare_mod, name, boom)
    monkeypatch.setattr(kinds_mod, "encode_to_array", boom)
    import lmbench.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "generate_lines", boom)
    second = prepare_data(spec)
    assert second.cache_path == first.cache_path and second.fingerprint == first.fingerprint
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(second.splits[s], first.splits[s])
    assert second.floor == first.floor and second.stats == first.stats
    json.dumps(second.stats)
    # another tokenizer setting is another cache entry
    assert (
        prepare_mod.fingerprint(DataSpec(size=5000, tokenizer="bpe", vocab_size=121))
        != first.fingerprint
    )
    assert prepare_mod.fingerprint(
        DataSpec(size=5000, split=(0.8, 0.1, 0.1))
    ) != prepare_mod.fingerprint(DataSpec(size=5000))


def test_damaged_cache_is_rebuilt():
    spec = DataSpec(size=3000, tokenizer="char")
    first = prepare_data(spec)
    want = np.array(first.splits["val"])
    (first.cache_path / "val.npy").unlink()
    again = prepare_data(spec)
    np.testing.assert_array_equal(again.splits["val"], want)


def test_concurrent_writer_winning_the_race(monkeypatch, tmp_path):
    spec = DataSpec(size=3000, tokenizer="char")
    real_rename = prepare_mod.os.rename

    def racing_rename(src, dst):
        shutil.copytree(src, dst)  # another process finished first
        return real_rename(src, dst)  # fails: dst is not empty

    monkeypatch.setattr(prepare_mod.os, "rename", racing_rename)
    data = prepare_data(spec)
    assert (data.cache_path / "meta.json").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# text batching


def test_text_batcher_pure_contiguous_and_shifted():
    n, b, t = 10_000, 4, 16
    tokens = np.arange(n, dtype=np.uint32)  # each token is its own position
    bat = TextBatcher(tokens, b, t, seed=7)
    bpe = bat.batches_per_epoch
    assert bpe == ((n - t) // b) // t
    ks = list(range(3 * bpe))
    batches = [bat.batch(k) for k in ks]
    other = TextBatcher(tokens, b, t, seed=7)
    for k in reversed(ks):  # any order, fresh object: same batch
        assert torch.equal(other.batch(k).x, batches[k].x)
    offsets = set()
    for k, bt in enumerate(batches):
        assert bt.x.dtype == torch.long and bt.x.shape == (b, t) and bt.n_tokens == b * t
        assert torch.equal(bt.y, bt.x + 1)
        assert bt.carry == (k % bpe != 0)
        if bt.carry:  # row i continues row i of the previous batch
            assert torch.equal(bt.x[:, 0], batches[k - 1].x[:, -1] + 1)
        else:
            offsets.add(int(bt.x[0, 0]))
    assert all(0 <= o < t for o in offsets) and len(offsets) > 1
    # within an epoch every stream is disjoint and covers its own contiguous range
    epoch = torch.cat([batches[k].x for k in range(bpe)], dim=1)
    assert len(set(epoch.flatten().tolist())) == epoch.numel()


def test_text_batcher_on_memmap_and_short_split(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(100, dtype=np.uint16))
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    bat = TextBatcher(mm, batch_size=32, seq_len=16, seed=0)
    assert bat.batch_size < 32 and bat.batches_per_epoch >= 1
    for k in range(10):
        bt = bat.batch(k)
        assert torch.equal(bt.y, bt.x + 1) and int(bt.y.max()) < 100
    tiny = TextBatcher(np.arange(5), batch_size=8, seq_len=64, seed=0)
    assert tiny.batch(3).x.shape == (1, 4)


def test_random_batcher_is_a_pure_function_of_seed_and_step(tmp_path):
    """nanoGPT's get_batch: windows at uniform offsets in [0, n - T), drawn from (seed, k) only."""
    n, b, t = 5_000, 6, 16
    np.save(tmp_path / "a.npy", np.arange(n, dtype=np.uint16))
    tokens = np.load(tmp_path / "a.npy", mmap_mode="r")
    bat = RandomTextBatcher(tokens, b, t, seed=3)
    batches = [bat.batch(k) for k in range(200)]
    again = RandomTextBatcher(tokens, b, t, seed=3)
    for k in (199, 0, 57):  # any order, a fresh object: the same batch, bit for bit
        assert torch.equal(again.batch(k).x, batches[k].x) and torch.equal(again.batch(k).y, batches[k].y)
    assert not torch.equal(RandomTextBatcher(tokens, b, t, seed=4).batch(0).x, batches[0].x)
    starts = torch.cat([bt.x[:, 0] for bt in batches])
    for bt in batches:
        assert bt.x.shape == (b, t) and bt.n_tokens == b * t and not bt.carry
        assert torch.equal(bt.y, bt.x + 1)  # contiguous windows, targets shifted by one
        assert torch.equal(bt.x, bt.x[:, :1] + torch.arange(t))
    assert int(starts.min()) >= 0 and int(starts.max()) <= n - t - 1
    assert starts.float().mean().item() == pytest.approx((n - t - 1) / 2, rel=0.1)  # uniform, not streams
    assert RandomTextBatcher(np.arange(5), 8, 64, seed=0).batch(2).x.shape == (8, 4)  # short split


@pytest.mark.parametrize(
    "n,b,t,max_tokens",
    [
        (1000, 8, 16, None),
        (1001, 7, 10, None),
        (50, 32, 64, None),
        (2, 4, 4, None),
        (1000, 8, 16, 300),
        (1000, 3, 5, 5000),
    ],
)
def test_text_eval_covers_every_target_once(n, b, t, max_tokens):
    tokens = np.arange(n, dtype=np.uint32) + 10  # +10: keep real ids away from PAD
    want = text_n_targets(n, max_tokens)
    seen, total = [], 0
    prev = prev_valid = None
    for j, bt in enumerate(text_eval_batches(tokens, b, t, max_tokens)):
        assert bt.carry == (j > 0)
        assert bt.x.shape == bt.y.shape and bt.x.shape[0] <= b and bt.x.shape[1] <= t
        valid = bt.y != PAD
        assert int(valid.sum()) == bt.n_tokens
        assert torch.equal(bt.x[valid], bt.y[valid] - 1)
        seen += bt.y[valid].tolist()
        total += bt.n_tokens
        if prev is not None:  # each row continues its chunk
            assert torch.equal(bt.x[:, 0][prev_valid[:, -1]], prev.y[:, -1][prev_valid[:, -1]])
        prev, prev_valid = bt, valid
    assert total == want == min(n - 1, max_tokens or n)
    assert sorted(seen) == list(range(11, 11 + want))


def test_prepared_eval_and_train_shapes():
    data = prepare_data(DataSpec(size=4000, tokenizer="word"))
    assert data.kind == "text"
    for split in ("val", "test"):
        n = sum(bt.n_tokens for bt in data.eval_batches(split, 4, 32))
        assert n == data.n_targets(split) == data.stats[split]["n_tokens"] - 1
    sub = list(data.eval_batches("val", 4, 32, max_tokens=100))
    assert sum(bt.n_tokens for bt in sub) == data.n_targets("val", max_tokens=100) == 100
    assert sub[0].x.shape[0] <= 4
    tb = data.train_batches(4, 32, seed=1)
    assert tb.batch(0).x.shape == (4, 32)


# ---------------------------------------------------------------------------------------------
# records batching


def test_records_batches_mask_prompt_and_pad(tmp_path, caplog):
    recs = [{"prompt": "p" * (i % 5 + 1), "completion": "c" * (i % 3 + 1)} for i in range(40)]
    recs[0] = {"prompt": "long prompt " * 3, "completion": "and a long completion"}
    p = write(tmp_path / "r.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    data = prepare_data(DataSpec(source=str(p), tokenizer="char", split=(0.5, 0.25, 0.25)))
    assert data.kind == "records" and data.floor is None
    train: RecordSplit = data.splits["train"]
    assert len(train) == 20
    toks, mask = train[3]
    r = recs[3]
    assert toks[0] == BOS and toks[-1] == EOS
    assert data.tokenizer.decode(toks) == r["prompt"] + r["completion"]
    assert (
        mask.sum() == len(r["completion"]) + 1
        and mask[-1]
        and not mask[: 1 + len(r["prompt"])].any()
    )

    seq_len = 16
    with caplog.at_level(logging.WARNING, logger="lmbench.data"):
        bat = data.train_batches(batch_size=4, seq_len=seq_len, seed=0)
        data.train_batches(batch_size=4, seq_len=seq_len, seed=1)
    warns = [rec for rec in caplog.records if "truncated" in rec.getMessage()]
    assert len(warns) == 1 and "1 of 20" in warns[0].getMessage()  # once, with a count
    assert bat.batches_per_epoch == 5
    epoch_rows = []
    for k in range(bat.batches_per_epoch):
        bt = bat.batch(k)
        assert not bt.carry and bt.x.shape[0] == 4 and bt.x.shape[1] <= seq_len
        assert bt.n_tokens == int((bt.y != PAD).sum())
        assert torch.equal(bat.batch(k).x, bt.x)  # pure in k
        for row_x, row_y in zip(bt.x, bt.y, strict=True):
            assert row_x[0] == BOS
            epoch_rows.append(data.tokenizer.decode(row_y[row_y != PAD]))
    completions = sorted(r["completion"] for r in recs[:20])
    # record 0's prompt alone fills seq_len+1 tokens: truncation leaves it no target at all
    completions[completions.index("and a long completion")] = ""
    assert sorted(epoch_rows) == completions  # every record once per epoch, prompts masked
    assert not torch.equal(bat.batch(0).x, bat.batch(5).x) or not torch.equal(
        bat.batch(1).x, bat.batch(6).x
    )

    evals = list(data.eval_batches("val", 3, seq_len))
    assert (
        sum(bt.n_tokens for bt in evals)
        == data.n_targets("val", seq_len)
        == sum(len(r["completion"]) + 1 for r in recs[20:30])
    )
    assert [bt.x.shape[0] for bt in evals] == [3, 3, 3, 1]
    first = evals[0]
    lens = [3 + len(recs[20 + i]["prompt"]) + len(recs[20 + i]["completion"]) - 1 for i in range(3)]
    assert first.x.shape[1] == max(lens)
    for i, n in enumerate(lens):
        assert (first.x[i, n:] == PAD).all() and (first.y[i, n:] == PAD).all()
        assert (first.y[i, : len(recs[20 + i]["prompt"])] == PAD).all()
    sub = list(record_eval_batches(data.splits["val"], 2, seq_len, max_tokens=5))
    assert sum(bt.n_tokens for bt in sub) == data.n_targets("val", seq_len, max_tokens=5) >= 5


# ---------------------------------------------------------------------------------------------
# synthetic floor


@pytest.mark.parametrize("tokenizer,vocab", [("word", None), ("char", None), ("bpe", 150)])
def test_synthetic_floor_is_split_nll_over_targets(tokenizer, vocab):
    spec = DataSpec(size=8000, seed=5, tokenizer=tokenizer, vocab_size=vocab)
    data = prepare_data(spec)
    lines, nll = generate_lines(8000, 5)
    start = 0
    for split in ("train", "val", "test"):
        tokens = data.splits[split]
        n_lines = data.stats[split]["n_lines"]
        text = data.tokenizer.decode(np.asarray(tokens))
        assert text == "\n".join(lines[start : start + n_lines]) + "\n"  # lossless
        want = nll[start : start + n_lines].sum() / (len(tokens) - 1)
        assert data.n_targets(split) == len(tokens) - 1
        if data.stats[split]["n_unk"] == 0:
            assert data.floor[split] == pytest.approx(want, rel=1e-12)
        else:
            assert data.floor[split] is None
        start += n_lines
    assert start == len(lines)
    assert data.n_chars["val"] == data.stats["val"]["n_chars"]


def test_synthetic_floor_none_when_lossy():
    data = prepare_data(DataSpec(size=4000, tokenizer="word", vocab_size=40))
    assert all(data.stats[s]["n_unk"] > 0 for s in ("train", "val", "test"))
    assert data.floor == {"train": None, "val": None, "test": None}


# ---------------------------------------------------------------------------------------------
# bad data and bad specs


def raises_data(spec: DataSpec, *needles: str) -> DataError:
    with pytest.raises(DataError) as ei:
        prepare_data(spec)
    msg = str(ei.value)
    for needle in needles:
        assert needle in msg, (needle, msg)
    return ei.value


def test_missing_file_and_folder_without_txt(tmp_path):
    raises_data(DataSpec(source=str(tmp_path / "nope.txt")), "nope.txt", "no such file")
    (tmp_path / "empty_dir").mkdir()
    write(tmp_path / "empty_dir" / "x.md", "hi\n")
    raises_data(DataSpec(source=str(tmp_path / "empty_dir")), "empty_dir", "no .txt files")
    paths = {s: str(tmp_path / f"{s}.txt") for s in ("train", "val", "test")}
    write(tmp_path / "train.txt", "a\n")
    raises_data(DataSpec(splits=paths), "val.txt", "not found")


def test_empty_and_whitespace_files(tmp_path):
    raises_data(DataSpec(source=str(write(tmp_path / "e.txt", ""))), "e.txt", "empty")
    raises_data(DataSpec(source=str(write(tmp_path / "w.txt", "  \n\t\n"))), "w.txt", "whitespace")


def test_bad_utf8_names_file_and_byte_offset(tmp_path):
    p = write(tmp_path / "bad.txt", b"good line\nmore \xff bytes\n")
    err = raises_data(DataSpec(source=str(p)), "bad.txt", "15", "UTF-8")
    assert "bad.txt" in err.where and "15" in err.where
    p = write(tmp_path / "bad.jsonl", b'{"text": "ok"}\n{"text": "\xc3("}\n')
    raises_data(DataSpec(source=str(p)), "bad.jsonl", "byte 25", "line 2")


@pytest.mark.parametrize(
    "content,needles",
    [
        ('{"text": "a"}\n{"text": \n', ["bad.jsonl:2", "not valid JSON"]),
        ('{"text": "a"}\n[1, 2]\n', ["bad.jsonl:2", "JSON object"]),
        (
            '{"prompt": "a", "completion": "b"}\n\n{"prompt": "a"}\n',
            ["bad.jsonl:3", "'completion'"],
        ),
        ('{"foo": "a"}\n', ["bad.jsonl:1", "'text'"]),
        ('{"text": 3}\n', ["bad.jsonl:1", "'text'", "string"]),
        ('{"text": "a"}\n{"prompt": "a", "completion": "b"}\n', ["bad.jsonl:2", "mixes", "line 1"]),
        ("\n\n", ["bad.jsonl", "empty"]),
    ],
)
def test_bad_jsonl(tmp_path, content, needles):
    p = write(tmp_path / "bad.jsonl", content)
    err = raises_data(DataSpec(source=str(p)), *needles)
    assert needles[0] in err.where


def test_corpus_too_small_for_split(tmp_path):
    raises_data(
        DataSpec(source=str(write(tmp_path / "s.txt", "one line only\n"))), "s.txt", "too small"
    )
    p = write(tmp_path / "r.jsonl", '{"prompt": "a", "completion": "b"}\n' * 4)
    raises_data(DataSpec(source=str(p)), "r.jsonl", "too small", "4 records")


@pytest.mark.parametrize(
    "tokenizer,vocab,needle",
    [
        ("char", 500, "only"),
        ("word", 100_000, "only"),
        ("bpe", 5000, "at most"),
        ("unigram", 5000, "at most"),
    ],
)
def test_vocab_size_too_large(tmp_path, tokenizer, vocab, needle):
    p = write(tmp_path / "c.txt", lines_text(60))
    with pytest.raises(SpecError) as ei:
        prepare_data(DataSpec(source=str(p), tokenizer=tokenizer, vocab_size=vocab))
    assert ei.value.where == "data.vocab_size" and needle in ei.value.reason


# ---------------------------------------------------------------------------------------------
# named datasets


def test_tinyshakespeare_from_preseeded_dir(tiny):
    entry = {d["name"]: d for d in list_datasets()}["tinyshakespeare"]
    assert entry["cached"] and entry["sha256"] == TINY_SHA and entry["path"] == str(tiny)
    assert "synthetic" in {d["name"] for d in list_datasets()}
    c = load_corpus(DataSpec(source="tinyshakespeare"))
    assert "".join(c.texts.values()) == TINY.read_text(encoding="utf-8")
    data = prepare_data(DataSpec(source="tinyshakespeare", tokenizer="char"))
    assert data.vocab_size == 65 + 4 and data.stats["source"] == "tinyshakespeare"
    assert data.tokenizer.decode(np.asarray(data.splits["test"][:20])) == c.texts["test"][:20]


def test_tinyshakespeare_corrupted_or_offline(tiny, tmp_path, monkeypatch):
    tiny.write_bytes(tiny.read_bytes()[:-10])
    err = raises_data(
        DataSpec(source="tinyshakespeare"),
        str(tiny),
        TINY_SHA,
        "raw.githubusercontent.com",
        "could not be downloaded",
    )
    assert err.where == str(tiny)
    tiny.unlink()
    raises_data(DataSpec(source="tinyshakespeare"), "is missing", str(tiny), TINY_SHA)

    def wrong(url, dest, timeout=30.0):
        Path(dest).write_text("not shakespeare\n")

    monkeypatch.setattr(sources_mod, "_download", wrong)
    raises_data(DataSpec(source="tinyshakespeare"), "the download from", TINY_SHA)
    assert not tiny.exists() and not list(tiny.parent.glob("*.part"))

    def ok(url, dest, timeout=30.0):
        shutil.copy(TINY, dest)

    monkeypatch.setattr(sources_mod, "_download", ok)
    assert sources_mod.ensure_dataset("tinyshakespeare") == tiny
    assert sources_mod.sha256_file(tiny) == TINY_SHA


# ---------------------------------------------------------------------------------------------


def test_import_is_light():
    code = "import sys, lmbench.data; print('torch' in sys.modules, 'sentencepiece' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
