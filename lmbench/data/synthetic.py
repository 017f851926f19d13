"""The embedded ``synthetic`` corpus: a probabilistic grammar whose entropy floor is exact.

Each line is one sentence drawn from a small English-like grammar over a few hundred words. Local
structure (determiner -> adjective -> noun, verb -> object, ...) is learnable by any model; on top
of it the grammar has long-range dependencies that need memory:

* agreement: a subject noun fixes the number of its verb across prepositional phrases, relative
  clauses (whose own nouns are attractors of the other number) and bracketed asides;
* brackets: ``( ... )`` and ``[ ... ]`` nest (up to two levels) and each needs its own closer;
  quoted speech ``" ... "`` contains clauses that may themselves contain brackets;
* copies: a name introduced at the start of a sentence must be repeated later
  (``alice said " ... " and alice ...``, ``alice met bob ... and alice thanked bob``).

The grammar is an LL(1) probabilistic pushdown machine. Its state is the stack of pending grammar
symbols, and every choice is made by emitting a token: each token that can come next leads to
exactly one next state (checked when the tables are built; an ambiguous grammar raises
``GrammarError``). So the state is a function of the tokens emitted so far, the probability
recorded for each token is the true conditional P(token | previous tokens of the line), and the
recorded NLL of a line is the exact -log P(line): no model can do better in expectation.

Text format: tokens joined by single spaces, one sentence per line. The end of a line is itself a
sampled event (token ``"\\n"``) whose log-probability is part of the line's NLL. Lines are
independent, so the floor of any set of whole lines is the sum of their NLLs.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

# the vocabulary and rules; names re-exported for users of the corpus (tests, analyses)
from lmbench.data.grammar import (  # noqa: F401
    _RULES,
    COPULAS,
    END,
    GENERATOR_VERSION,
    HAVE,
    INTRANSITIVE_VERBS,
    MAX_DEPTH,
    NAMES,
    NUMBER_OF,
    PL,
    SG,
    TRANSITIVE_VERBS,
    VOCAB,
    Alternatives,
    GrammarError,
    Rhs,
    Symbol,
)

# --------------------------------------------------------------------------------------------
# The machine: state = stack of pending symbols (bottom first, top last).
# --------------------------------------------------------------------------------------------
State = tuple[Symbol, ...]
START: State = (END, ("S",))

# A move: the token, its probability, and how the stack changes (keep the symbols below the one
# that emitted the token, then push the rest of its expansion).
Move = tuple[float, Rhs]


@cache
def _expand(sym: tuple) -> Alternatives:
    alts = _RULES[sym[0]](*sym[1:])
    total = math.fsum(p for p, _ in alts)
    if not alts or abs(total - 1.0) > 1e-12 or any(p <= 0.0 for p, _ in alts):
        raise GrammarError(f"{sym}: probabilities sum to {total!r}")
    return alts


def _add_move(moves: dict, token: str, prob: float, result: object, where: object) -> None:
    """Add probability ``prob`` of emitting ``token`` with stack change ``result``. Two derivations
    may emit the same token only if they leave the same stack (then their probabilities add);
    otherwise the state would not be a function of the tokens."""
    if token in moves:
        old_p, old_result = moves[token]
        if old_result != result:
            raise GrammarError(f"token {token!r} is ambiguous in {where}")
        prob += old_p
    moves[token] = (prob, result)


@cache
def _outcomes(sym: Symbol) -> tuple[dict[str, Move], float]:
    """All ways ``sym`` can start: {token: (prob, symbols left pushed, top last)} and the
    probability that it derives nothing (then the symbol below it speaks)."""
    if isinstance(sym, str):
        return {sym: (1.0, ())}, 0.0
    moves: dict[str, Move] = {}
    p_empty = 0.0
    for rule_prob, rhs in _expand(sym):
        reach = rule_prob  # probability that rhs[:position] all derived nothing
        for position, child in enumerate(rhs):
            child_moves, child_empty = _outcomes(child)
            rest = tuple(reversed(rhs[position + 1 :]))
            for token, (prob, pushed) in child_moves.items():
                _add_move(moves, token, reach * prob, rest + pushed, sym)
            reach *= child_empty
            if reach == 0.0:
                break
        p_empty += reach
    return moves, p_empty


@cache
def _nullable(sym: Symbol) -> bool:
    return _outcomes(sym)[1] > 0.0


def _segment_start(stack: Sequence[Symbol]) -> int:
    """Index of the highest stack symbol that cannot derive nothing: the next token is decided
    by the symbols from there to the top, so the tables are keyed by that segment only."""
    index = len(stack) - 1
    while _nullable(stack[index]):
        index -= 1
    return index


@dataclass(frozen=True)
class _Table:
    """Next-token distribution of a stack segment, precomputed for sampling and scoring."""

    tokens: tuple[str, ...]
    probs: tuple[float, ...]
    cdf: list[float]  # cumulative probs, for sampling by bisection
    nll: list[float]  # -log prob
    # Segment index of the symbol that emits each token (it and all above it are popped).
    cuts: tuple[int, ...]
    pushes: tuple[Rhs, ...]  # symbols pushed in its place
    index: dict[str, int]


@cache
def _table(segment: State) -> _Table:
    moves: dict[str, tuple[float, tuple[int, Rhs]]] = {}
    reach = 1.0
    for level in range(len(segment) - 1, -1, -1):
        child_moves, child_empty = _outcomes(segment[level])
        for token, (prob, pushed) in child_moves.items():
            _add_move(moves, token, reach * prob, (level, pushed), segment)
        reach *= child_empty
    if reach != 0.0 or abs(math.fsum(p for p, _ in moves.values()) - 1.0) > 1e-12:
        raise GrammarError(f"segment {segment} is not a proper distribution")
    tokens = tuple(moves)
    probs = tuple(moves[t][0] for t in tokens)
    return _Table(
        tokens=tokens,
        probs=probs,
        cdf=[float(c) for c in np.cumsum(probs)],
        nll=[-math.log(p) for p in probs],
        cuts=tuple(moves[t][1][0] for t in tokens),
        pushes=tuple(moves[t][1][1] for t in tokens),
        index={t: i for i, t in enumerate(tokens)},
    )


def _state_table(state: Sequence[Symbol]) -> tuple[int, _Table]:
    if not state:
        raise ValueError("the line has already ended")
    start = _segment_start(state)
    return start, _table(tuple(state[start:]))


def next_dist(state: State) -> dict[str, float]:
    """The true distribution of the next token in ``state`` ({} once the line has ended)."""
    if not state:
        return {}
    _, table = _state_table(state)
    return dict(zip(table.tokens, table.probs, strict=True))


def _step(state: State, token: str) -> tuple[float, State, int]:
    """(-log P(token | state), next state, stack index of the emitting symbol)."""
    start, table = _state_table(state)
    index = table.index.get(token)
    if index is None:
        expected = ", ".join(repr(t) for t in table.tokens[:8])
        raise ValueError(f"token {token!r} cannot come here (expected one of {expected}, ...)")
    cut = start + table.cuts[index]
    return table.nll[index], tuple(state[:cut]) + table.pushes[index], cut


def advance(state: State, token: str) -> State:
    """The state after emitting ``token``; ValueError if the grammar cannot emit it here."""
    return _step(state, token)[1]


def line_tokens(line: str) -> list[str]:
    """Word-level tokens of a line (without the end event)."""
    return line.split(" ")


def line_nll(line: str) -> float:
    """Exact -log P(line) in nats under the generator, including the end-of-line event.

    Raises ValueError if the grammar cannot produce ``line`` (given without its "\\n")."""
    state = START
    total = 0.0
    for token in [*line_tokens(line), END]:
        nll, state, _ = _step(state, token)
        total += nll
    return total


def dependency_spans(line: str) -> list[tuple[str, int, int]]:
    """Long-range dependencies of a line as (kind, source index, target index) over its tokens.

    kinds: "agreement" (subject noun/name/pronoun -> its verb), "bracket" (opener -> closer),
    "quote" (opening -> closing quote), "copy" (first mention of a name -> its required repeat).
    Found by replaying the machine: a dependency is a symbol pushed by the source token and
    consumed by the target token. Raises ValueError like ``line_nll``."""
    tokens = line_tokens(line)
    state = START
    born = [-1] * len(START)  # token index that pushed each stack symbol
    spans = []
    for position, token in enumerate([*tokens, END]):
        _, new_state, cut = _step(state, token)
        sym = state[cut]
        kind = _dependency_kind(sym)
        if kind is not None and born[cut] >= 0:
            source = tokens.index(token) if kind == "copy" else born[cut]
            spans.append((kind, source, position))
        born = born[:cut] + [position] * (len(new_state) - cut)
        state = new_state
    return spans


def _dependency_kind(sym: Symbol) -> str | None:
    if sym in (")", "]"):
        return "bracket"
    if sym == '"':  # only closing quotes wait on the stack; openers are emitted by QUOTED
        return "quote"
    if isinstance(sym, tuple):
        return {"VP": "agreement", "TV": "agreement", "COPY": "copy", "COPY_SUBJ": "copy"}.get(
            sym[0]
        )
    return None


# --------------------------------------------------------------------------------------------
# Sampling.
# --------------------------------------------------------------------------------------------
_CHUNK = 1 << 16  # uniforms drawn per numpy call


def generate_lines(n_tokens: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Sample whole lines until at least ``n_tokens`` word-level tokens (each line's end event
    counting as one) have been produced.

    Returns the lines (without "\\n") and a float64 array of each line's exact NLL in nats, the
    end event included. Deterministic in (n_tokens, seed) on every platform: one uniform from
    ``numpy.random.default_rng(seed)`` per token, inverted through the table's cumulative probs.
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    rng = np.random.default_rng(seed)
    uniforms: list[float] = []
    pos = 0
    lines: list[str] = []
    nlls: list[float] = []
    produced = 0
    while produced < n_tokens:
        stack = list(START)
        out: list[str] = []
        nll = 0.0
        while True:
            start = _segment_start(stack)
            table = _table(tuple(stack[start:]))
            if pos == len(uniforms):
                uniforms, pos = rng.random(_CHUNK).tolist(), 0
            choice = bisect_right(table.cdf, uniforms[pos])
            pos += 1
            if choice == len(table.tokens):  # a uniform beyond a cdf that rounds to just under 1
                choice -= 1
            nll += table.nll[choice]
            token = table.tokens[choice]
            if token == END:
                break
            out.append(token)
            del stack[start + table.cuts[choice] :]
            stack.extend(table.pushes[choice])
        lines.append(" ".join(out))
        nlls.append(nll)
        produced += len(out) + 1
    return lines, np.asarray(nlls, dtype=np.float64)
