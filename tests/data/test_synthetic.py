"""The embedded synthetic corpus: format, determinism, an exact floor, real long-range structure."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from lmbench.data import synthetic as syn
from lmbench.data.synthetic import GENERATOR_VERSION, generate_lines, line_nll

PUNCT = set('()[]",.')
WORD = re.compile(r"[a-z]+")
CLOSER = {"(": ")", "[": "]"}


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray]:
    return generate_lines(200_000, seed=7)


def n_tokens(lines: list[str]) -> int:
    return sum(len(line.split(" ")) + 1 for line in lines)  # + 1: the end-of-line event


def test_version_is_a_nonempty_string():
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION


def test_deterministic_in_seed():
    a = generate_lines(20_000, seed=3)
    b = generate_lines(20_000, seed=3)
    c = generate_lines(20_000, seed=4)
    assert a[0] == b[0]
    assert np.array_equal(a[1], b[1])
    assert a[0] != c[0]
    # A longer request with the same seed extends the same stream.
    longer = generate_lines(40_000, seed=3)[0]
    assert longer[: len(a[0])] == a[0]


def test_produces_whole_lines_until_n_tokens():
    for n in (1, 1000, 12_345):
        lines, nlls = generate_lines(n, seed=0)
        total = n_tokens(lines)
        assert total >= n
        assert total - (len(lines[-1].split(" ")) + 1) < n  # stops at the first line that reaches n
        assert nlls.dtype == np.float64 and nlls.shape == (len(lines),)
        assert np.all(nlls > 0)
    assert generate_lines(0, seed=0)[0] == []
    with pytest.raises(ValueError):
        generate_lines(-1, seed=0)


def test_line_format(corpus):
    lines, _ = corpus
    for line in lines:
        assert "\n" not in line
        tokens = line.split(" ")
        assert " ".join(tokens) == line
        for tok in tokens:
            assert tok in PUNCT or WORD.fullmatch(tok), (tok, line)
        assert tokens[-1] == "."
    lengths = np.array([len(line.split(" ")) + 1 for line in lines])
    assert np.mean((lengths >= 8) & (lengths <= 40)) > 0.75  # mostly 8-40 tokens


def test_vocabulary_size(corpus):
    lines, _ = corpus
    used = {tok for line in lines for tok in line.split(" ")}
    assert used <= syn.VOCAB
    assert 250 <= len(used) <= 1000
    assert len(syn.VOCAB) - len(used) < 10  # nearly every word occurs


def test_recorded_nll_is_the_replayed_nll(corpus):
    lines, nlls = corpus
    replayed = np.array([line_nll(line) for line in lines[:3000]])
    np.testing.assert_allclose(replayed, nlls[:3000], rtol=1e-9)


def test_every_visited_state_is_a_proper_distribution(corpus):
    """Replay through the public next_dist/advance only and recompute each line's NLL."""
    lines, nlls = corpus
    seen: set = set()
    for line, nll in zip(lines[:2000], nlls[:2000], strict=True):
        state, total = syn.START, 0.0
        for tok in [*line.split(" "), "\n"]:
            dist = syn.next_dist(state)
            if state not in seen:
                seen.add(state)
                assert all(p > 0 for p in dist.values())
                assert math.fsum(dist.values()) == pytest.approx(1.0, abs=1e-12)
                assert all(t == "\n" or t in syn.VOCAB for t in dist)
            total -= math.log(dist[tok])
            state = syn.advance(state, tok)
        assert state == () and syn.next_dist(state) == {}
        assert total == pytest.approx(nll, rel=1e-9)
    assert len(seen) > 1000


def test_mean_nll_matches_the_entropy_of_the_visited_states(corpus):
    """If samples follow the recorded probabilities, E[-log p(token)] at each state equals the
    entropy of that state's distribution; averaged over ~200k tokens the two agree within noise."""
    lines, nlls = corpus
    entropies, surprisals = [], []
    entropy_of: dict = {}
    for line in lines[:8000]:
        state = syn.START
        for tok in [*line.split(" "), "\n"]:
            dist = syn.next_dist(state)
            if state not in entropy_of:
                entropy_of[state] = -sum(p * math.log(p) for p in dist.values())
            entropies.append(entropy_of[state])
            surprisals.append(-math.log(dist[tok]))
            state = syn.advance(state, tok)
    diff = np.array(surprisals) - np.array(entropies)  # martingale differences: mean 0
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))
    floor = nlls.sum() / n_tokens(lines)
    assert 1.5 < floor < 3.5  # nats per word-level token


def test_samples_follow_the_recorded_distribution(corpus):
    """Randomised probability integral transform: if each token is drawn from next_dist(state),
    then F(tokens before it) + V * p(token), V ~ U(0, 1), is exactly uniform on (0, 1). Pooled
    over every token, a Kolmogorov-Smirnov test detects even a slight sampling bias."""
    lines, _ = corpus
    rng = np.random.default_rng(0)
    pits = []
    for line in lines[:5000]:
        state = syn.START
        for tok in [*line.split(" "), "\n"]:
            dist = syn.next_dist(state)
            below = 0.0
            for t, p in dist.items():
                if t == tok:
                    break
                below += p
            pits.append(below + rng.random() * dist[tok])
            state = syn.advance(state, tok)
    u = np.sort(pits)
    n = len(u)
    ks = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n)  # the 1% critical value


def _trigram_cross_entropy(train: list[str], test: list[str]) -> tuple[float, float]:
    """Held-out per-token cross-entropy (and its standard error) of an interpolated trigram
    model: a proper distribution over the vocabulary, fitted on ``train`` only."""
    vocab = sorted(syn.VOCAB) + ["\n"]
    uni, bi, tri = Counter(), Counter(), Counter()
    ctx1, ctx2 = Counter(), Counter()
    for line in train:
        toks = ["<s>", "<s>", *line.split(" "), "\n"]
        for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
            uni[c] += 1
            bi[b, c] += 1
            ctx1[b] += 1
            tri[a, b, c] += 1
            ctx2[a, b] += 1
    n_uni = sum(uni.values())
    losses = []
    for line in test:
        toks = ["<s>", "<s>", *line.split(" "), "\n"]
        for a, b, c in zip(toks, toks[1:], toks[2:], strict=False):
            w2, w3 = 0.5 if ctx1[b] else 0.0, 0.45 if ctx2[a, b] else 0.0
            p = w2 * bi[b, c] / max(ctx1[b], 1) + w3 * tri[a, b, c] / max(ctx2[a, b], 1)
            p += (1.0 - w2 - w3) * (uni[c] + 1) / (n_uni + len(vocab))  # the rest: add-one unigram
            losses.append(-math.log(p))
    losses = np.array(losses)
    return losses.mean(), losses.std() / math.sqrt(len(losses))


def test_an_ngram_model_cannot_beat_the_floor(corpus):
    lines, nlls = corpus
    train, test = lines[:12_000], lines[12_000:15_000]
    xent, se = _trigram_cross_entropy(train, test)
    floor = nlls[12_000:15_000].sum() / n_tokens(test)
    assert xent >= floor - 3 * se
    assert xent < floor + 1.5  # the local structure is what an n-gram model does learn


def test_long_range_dependencies(corpus):
    lines, _ = corpus
    sample = lines[:5000]
    long_agreement = 0
    for line in sample:
        toks = line.split(" ")
        spans = syn.dependency_spans(line)
        long_agreement += any(k == "agreement" and j - i > 5 for k, i, j in spans)
        for kind, i, j in spans:
            assert i < j
            if kind == "agreement":
                assert syn.NUMBER_OF[toks[i]] == syn.NUMBER_OF[toks[j]], (line, i, j)
            elif kind == "bracket":
                assert CLOSER[toks[i]] == toks[j]
            elif kind == "quote":
                assert toks[i] == toks[j] == '"'
            elif kind == "copy":
                assert toks[i] == toks[j] and toks[j] in syn.NAMES
    assert long_agreement / len(sample) > 0.15
    kinds = Counter(k for line in sample for k, i, j in syn.dependency_spans(line) if j - i > 5)
    assert {"agreement", "bracket", "quote", "copy"} <= set(kinds)


def test_brackets_and_quotes_balance_on_the_text(corpus):
    lines, _ = corpus
    nested = 0
    for line in lines:
        stack: list[str] = []
        for tok in line.split(" "):
            if tok in CLOSER:
                stack.append(CLOSER[tok])
            elif tok in (")", "]"):
                assert stack and stack.pop() == tok, line
            elif tok == '"':
                if stack and stack[-1] == '"':
                    stack.pop()
                else:
                    stack.append('"')
            nested += len(stack) >= 2
        assert not stack, line
    assert nested > 0


def _other_number(word: str) -> str:
    for pairs in (syn.INTRANSITIVE_VERBS, syn.TRANSITIVE_VERBS, syn.COPULAS, (syn.HAVE,)):
        for sg, pl in pairs:
            if word in (sg, pl):
                return pl if word == sg else sg
    raise KeyError(word)


def test_dependencies_are_enforced(corpus):
    """Breaking any long-range dependency of a real line makes it impossible."""
    lines, _ = corpus
    checked = Counter()
    for line in lines[:3000]:
        toks = line.split(" ")
        for kind, _i, j in syn.dependency_spans(line):
            broken = list(toks)
            if kind == "agreement":
                broken[j] = _other_number(toks[j])
            elif kind == "bracket":
                broken[j] = "]" if toks[j] == ")" else ")"
            elif kind == "copy":
                broken[j] = next(n for n in syn.NAMES if n != toks[j])
            else:
                continue
            with pytest.raises(ValueError):
                line_nll(" ".join(broken))
            checked[kind] += 1
    assert min(checked.values()) > 50


@pytest.mark.parametrize(
    "line",
    [
        "",
        "the dogs runs .",  # agreement
        "the dog runs",  # no final period
        "the dog runs . ",  # trailing space: an empty token
        "the  dog runs .",  # double space
        "the dog ( he sleeps ] runs .",  # wrong closer
        "the dog ( he sleeps runs .",  # unclosed bracket
        'alice said " he sleeps " and bob sleeps .',  # wrong copy
        "alice met alice and alice thanked alice .",  # the second name must differ
        "the dog zorbs .",  # unknown word
        "the dog runs .\n",  # newline inside the line
    ],
)
def test_line_nll_rejects_impossible_lines(line):
    with pytest.raises(ValueError):
        line_nll(line)


def test_line_nll_accepts_handwritten_lines():
    for line in [
        "the dogs near the old house ( the cat [ not the birds ] sleeps ) run .",
        'alice said " the kings who cry are happy " and alice sleeps .',
        "bob met carol in a garden and bob thanked carol .",
        "when he sleeps , the mice that the cat sees hide .",
    ]:
        assert 0 < line_nll(line) < 200
