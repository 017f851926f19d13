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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

# Bump whenever the grammar, the vocabulary or the sampling procedure changes: it is part of the
# data cache key, and recorded floors are only comparable within one version.
GENERATOR_VERSION = "1"

END = "\n"  # the end-of-line event

# --------------------------------------------------------------------------------------------
# Vocabulary. Word classes are pairwise disjoint (checked below), so a token never has two roles.
# --------------------------------------------------------------------------------------------
SG, PL = "sg", "pl"

ANIMATE_NOUNS: tuple[tuple[str, str], ...] = tuple(
    (w, w + "s") if isinstance(w, str) else w
    for w in (
        "dog", "cat", "bird", "horse", "farmer", "teacher", "doctor", ("child", "children"),
        "king", "queen", "sailor", "baker", "student", "pilot", "singer", "painter", "writer",
        "lawyer", "nurse", "soldier", "girl", "boy", ("man", "men"), ("woman", "women"),
        "friend", "neighbor", "guest", "stranger", ("wolf", "wolves"), ("fox", "foxes"),
        ("mouse", "mice"), "rabbit",
    )
)  # fmt: skip
THING_NOUNS: tuple[tuple[str, str], ...] = tuple(
    (w, w + "s") if isinstance(w, str) else w
    for w in (
        "house", "garden", "river", ("city", "cities"), "village", ("box", "boxes"), "book",
        "letter", "table", "window", "door", "road", "tree", "bridge", "key", "song", "ship",
        "market", "forest", "hill", "lamp", "coat", "cake", "apple", "stone", "wall", "boat",
        "chair", "clock", "bell",
    )
)  # fmt: skip
NOUNS = ANIMATE_NOUNS + THING_NOUNS

# (singular, plural) verb forms: agreement is the choice between the two columns.
INTRANSITIVE_VERBS: tuple[tuple[str, str], ...] = tuple(
    (w + "s", w) if not isinstance(w, tuple) else w
    for w in (
        "sleep", "run", "laugh", "sing", "wait", "smile", ("cries", "cry"), "dance", "work",
        "fall", "jump", "walk", "swim", "listen", "shout", "rest", "hide", "wake", "return",
        "arrive", "sit", "think", "dream", ("worries", "worry"),
    )
)  # fmt: skip
TRANSITIVE_VERBS: tuple[tuple[str, str], ...] = tuple(
    (w + "s", w) if not isinstance(w, tuple) else w
    for w in (
        "see", "like", "find", "help", "follow", ("watches", "watch"), ("carries", "carry"),
        "paint", "visit", "remember", "love", "fear", "know", "build", "hold", "open", "read",
        "chase", "want", "need", "call", "meet", ("teaches", "teach"), "feed",
    )
)  # fmt: skip
COPULAS: tuple[tuple[str, str], ...] = (("is", "are"), ("was", "were"))
HAVE: tuple[str, str] = ("has", "have")

ADJECTIVES = (
    "old", "young", "small", "big", "red", "green", "blue", "happy", "sad", "quiet", "loud",
    "brave", "clever", "tired", "hungry", "angry", "kind", "strange", "dark", "bright", "cold",
    "warm", "tall", "gentle", "proud", "lazy", "busy", "shy", "wild", "calm", "rich", "poor",
    "famous", "lonely", "lucky", "curious",
)  # fmt: skip
ADVERBS = (
    "quickly", "slowly", "quietly", "loudly", "happily", "sadly", "again", "today", "alone",
    "together", "early", "late", "carefully", "gladly",
)  # fmt: skip
PREPOSITIONS = (
    "in", "on", "near", "under", "behind", "with", "from", "beside", "above", "across", "into",
    "without",
)  # fmt: skip
NAMES = (
    "alice", "bob", "carol", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate",
    "leo", "mia", "noah", "olivia", "paul", "quinn", "rose", "sam", "tom", "uma", "victor",
    "wendy", "yara", "zoe", "anna", "ben", "clara", "dan", "eva", "felix", "gina", "hugo", "ivy",
    "lily", "nina",
)  # fmt: skip
PAST_VERBS = (
    "thanked", "helped", "called", "visited", "followed", "praised", "warned", "forgot",
)  # fmt: skip
PRONOUNS: dict[str, str] = {"he": SG, "she": SG, "they": PL}
# Determiner -> the noun numbers it allows, and its probability.
DETERMINERS: dict[str, tuple[tuple[str, ...], float]] = {
    "the": ((SG, PL), 0.50),
    "a": ((SG,), 0.15),
    "every": ((SG,), 0.05),
    "this": ((SG,), 0.05),
    "some": ((PL,), 0.08),
    "many": ((PL,), 0.07),
    "these": ((PL,), 0.05),
    "two": ((PL,), 0.05),
}
SUBORDINATORS = ("when", "if", "because", "while", "after", "before")
ASIDE_WORDS = ("not", "unlike", "or", "besides")
FUNCTION_WORDS = ("who", "that", "said", "met", "and", "very", "because")
PUNCTUATION = ("(", ")", "[", "]", '"', ",", ".")

_WORD_CLASSES: tuple[Iterable[str], ...] = (
    [w for pair in NOUNS for w in pair],
    [w for pair in INTRANSITIVE_VERBS + TRANSITIVE_VERBS + COPULAS + (HAVE,) for w in pair],
    ADJECTIVES, ADVERBS, PREPOSITIONS, NAMES, PAST_VERBS, PRONOUNS, DETERMINERS,
    # "because" starts sentences and clause tails (never both in one state): listed once.
    [w for w in SUBORDINATORS if w != "because"], ASIDE_WORDS, FUNCTION_WORDS, PUNCTUATION,
)  # fmt: skip
VOCAB: frozenset[str] = frozenset(w for cls in _WORD_CLASSES for w in cls)
if sum(len(list(cls)) for cls in _WORD_CLASSES) != len(VOCAB):
    raise RuntimeError("synthetic: word classes overlap")

# Number of each word that carries one (nouns, verbs, pronouns): lets tests and analyses check
# agreement on the text alone.
NUMBER_OF: dict[str, str] = {
    **{w: num for pairs in (NOUNS, INTRANSITIVE_VERBS, TRANSITIVE_VERBS, COPULAS, (HAVE,))
       for pair in pairs for w, num in zip(pair, (SG, PL), strict=True)},
    **PRONOUNS,
    **dict.fromkeys(NAMES, SG),
}  # fmt: skip

MAX_DEPTH = 2  # clause embedding depth (brackets, "because" clauses): bounds sentence length

# --------------------------------------------------------------------------------------------
# Grammar. A symbol is a terminal (a token string) or a nonterminal: a tuple (rule name, *params).
# A rule maps a nonterminal to its alternatives [(probability, right-hand side)]. The grammar
# must be LL(1): alternatives of a symbol (and of the symbols that may follow it after an empty
# expansion) start with different tokens; `_outcomes` and `_table` check this.
# --------------------------------------------------------------------------------------------
Symbol = str | tuple
Rhs = tuple[Symbol, ...]
Alternatives = list[tuple[float, Rhs]]

_RULES: dict[str, Callable[..., Alternatives]] = {}


class GrammarError(AssertionError):
    """The grammar is inconsistent (a bug in this module, never a user error)."""


def _rule(fn: Callable[..., Alternatives]) -> Callable[..., Alternatives]:
    _RULES[fn.__name__.lstrip("_").upper()] = fn
    return fn


def _uniform(words: Sequence[str], weight: float = 1.0, then: Rhs = ()) -> Alternatives:
    """Each word with equal share of ``weight``, followed by ``then``."""
    return [(weight / len(words), (w, *then)) for w in words]


def _weighted(*parts: tuple[float, Alternatives]) -> Alternatives:
    """Mix alternative lists with the given weights (zero-weight parts are dropped)."""
    return [(w * p, rhs) for w, alts in parts if w > 0 for p, rhs in alts]


def _one(*rhs: Symbol) -> Alternatives:
    return [(1.0, rhs)]


@_rule
def _s() -> Alternatives:
    """A sentence: a plain clause, a subordinate construction, or a name-led frame with a copy."""
    return _weighted(
        (0.45, _one(("CLAUSE", 0), ".")),
        (0.15, _uniform(SUBORDINATORS, then=(("CLAUSE", 1), ",", ("CLAUSE", 1), "."))),
        (0.40, [(1.0 / len(NAMES), (n, ("NAMED", n))) for n in NAMES]),
    )


@_rule
def _named(n: str) -> Alternatives:
    """After a sentence-initial name: reported speech, or a meeting with a second name."""
    speech = ("said", ("QUOTED", ("CLAUSE", 1)), "and", ("COPY_SUBJ", n), ".")
    return [(0.5, speech), (0.5, ("met", ("MET", n)))]


@_rule
def _met(n: str) -> Alternatives:
    """``n met m <aside> and n <past verb> m``: two names to copy, in order."""
    others = [m for m in NAMES if m != n]
    return [
        (1.0 / len(others), (m, ("MEET_MIDDLE",), "and", ("COPY", n), ("PAST",), ("COPY", m), "."))
        for m in others
    ]


@_rule
def _meet_middle() -> Alternatives:
    return _weighted(
        (0.4, _one()),
        (0.3, _one(("PP", 1))),
        (0.3, _one(("BRACKETED", 1))),
    )


@_rule
def _copy(n: str) -> Alternatives:
    """A name that must repeat an earlier one: probability 1, but only given memory."""
    return _one(n)


@_rule
def _copy_subj(n: str) -> Alternatives:
    # The verb is pushed here, with the copied name, so its agreement span starts at the copy.
    return _one(n, ("VP", SG, 1))


@_rule
def _past() -> Alternatives:
    return _uniform(PAST_VERBS)


@_rule
def _quoted(content: Symbol) -> Alternatives:
    return _one('"', content, '"')


@_rule
def _bracketed(d: int) -> Alternatives:
    return [(0.5, ("(", ("ASIDE", d), ")")), (0.5, ("[", ("ASIDE", d), "]"))]


@_rule
def _aside(d: int) -> Alternatives:
    """Bracket content: a full clause (with its own agreement) or a contrasting noun phrase."""
    return _weighted(
        (0.55, _one(("CLAUSE", d))),
        (0.45, _uniform(ASIDE_WORDS, then=(("OBJ", d),))),
    )


@_rule
def _clause(d: int) -> Alternatives:
    """A subject and its verb phrase. The verb phrase is pushed by the token that fixes the
    subject's number (noun, name or pronoun), so the state carries the number in between."""
    dets = _determiners(then=("ANIMATE", "subject", d))
    pronouns = [(1.0 / len(PRONOUNS), (p, ("VP", num, d))) for p, num in PRONOUNS.items()]
    names = _uniform(NAMES, then=(("MODS", SG, d, 0), ("VP", SG, d)))
    if d == 0:  # names at the start of a sentence begin the copy frames instead
        return _weighted((0.85, dets), (0.15, pronouns))
    return _weighted((0.60, dets), (0.15, pronouns), (0.25, names))


def _determiners(then: tuple) -> Alternatives:
    """``det NOMINAL`` for each determiner; the NOMINAL only allows the numbers the det allows.
    ``then`` = (noun class, continuation, depth) of the NOMINAL."""
    return [(p, (det, ("NOMINAL", nums, *then))) for det, (nums, p) in DETERMINERS.items()]


@_rule
def _nominal(nums: tuple[str, ...], noun_class: str, cont: str, d: int) -> Alternatives:
    """An optional adjective, then a noun of an allowed number."""
    noun = ("NOUN", nums, noun_class, cont, d)
    return _weighted((0.25, _uniform(ADJECTIVES, then=(noun,))), (0.75, _one(noun)))


@_rule
def _noun(nums: tuple[str, ...], noun_class: str, cont: str, d: int) -> Alternatives:
    """A noun; its number selects what is pushed after it (``cont``):
    "subject" -> modifiers then an agreeing verb phrase; "embedded" -> an agreeing transitive
    verb (object relative clause); "none" -> nothing."""
    pairs = ANIMATE_NOUNS if noun_class == "ANIMATE" else NOUNS
    alts: Alternatives = []
    for num in nums:
        words = [pair[0 if num == SG else 1] for pair in pairs]
        alts += _uniform(words, 1.0 / len(nums), then=_continuation(cont, num, d))
    return alts


def _continuation(cont: str, num: str, d: int) -> Rhs:
    if cont == "subject":
        return (("MODS", num, d, 0), ("VP", num, d))
    if cont == "embedded":
        return (("TV", num),)
    return ()


@_rule
def _obj(d: int) -> Alternatives:
    """An object noun phrase (no continuation): det [adj] noun, or a name."""
    return _weighted(
        (0.8, _determiners(then=("ANY", "none", d))),
        (0.2, _uniform(NAMES)),
    )


@_rule
def _pp(d: int) -> Alternatives:
    return _uniform(PREPOSITIONS, then=(("OBJ", d),))


@_rule
def _mods(num: str, d: int, k: int) -> Alternatives:
    """Modifiers between a subject and its verb: the material agreement has to bridge.
    Prepositional phrases may chain (``k`` counts them); a relative clause or a bracket ends the
    list. Stopping is itself the choice of the verb (or of the next modifier's first token)."""
    stop = (0.25, 0.60)[k] if k < 2 else 1.0
    if stop == 1.0:
        return _one()
    go = 1.0 - stop
    bracket = 0.20 if d < MAX_DEPTH else 0.0
    return _weighted(
        (stop, _one()),
        (go * 0.40, _one(("PP", d), ("MODS", num, d, k + 1))),
        (go * 0.25, _one("who", ("RC_VP", num, d))),
        (go * (0.35 - bracket), _one("that", ("EMBEDDED_SUBJ", d))),
        (go * bracket, _one(("BRACKETED", d + 1))),
    )


@_rule
def _embedded_subj(d: int) -> Alternatives:
    """Subject of an object relative clause (``the dogs that the cat sees run``): its own number,
    an attractor for the outer agreement."""
    return _weighted(
        (0.7, _determiners(then=("ANIMATE", "embedded", d))),
        (0.15, [(1.0 / len(PRONOUNS), (p, ("TV", num))) for p, num in PRONOUNS.items()]),
        (0.15, _uniform(NAMES, then=(("TV", SG),))),
    )


@_rule
def _rc_vp(num: str, d: int) -> Alternatives:
    """Verb phrase of a subject relative clause: agrees with the head noun, has no tail (so
    the main verb, which also agrees, follows directly)."""
    return _weighted(
        (0.4, _one(("IV", num))),
        (0.4, _one(("TV", num), ("OBJ", d))),
        (0.2, _one(("COP", num), ("ADJ",))),
    )


@_rule
def _vp(num: str, d: int) -> Alternatives:
    return _weighted(
        (0.35, _one(("IV", num), ("TAIL", d))),
        (0.35, _one(("TV", num), ("OBJ", d), ("TAIL", d))),
        (0.20, _one(("COP", num), ("COMPLEMENT",), ("TAIL", d))),
        (0.10, _one(HAVE[0 if num == SG else 1], ("OBJ", d), ("TAIL", d))),
    )


@_rule
def _tail(d: int) -> Alternatives:
    """What may follow a verb phrase: nothing, an adverb, a place, or a reason clause."""
    because = 0.1 if d < MAX_DEPTH else 0.0
    return _weighted(
        (0.65 - because, _one()),
        (0.20, _uniform(ADVERBS)),
        (0.15, _one(("PP", d))),
        (because, _one("because", ("CLAUSE", d + 1))),
    )


@_rule
def _complement() -> Alternatives:
    return _weighted((0.8, _one(("ADJ",))), (0.2, _one("very", ("ADJ",))))


@_rule
def _adj() -> Alternatives:
    return _uniform(ADJECTIVES)


@_rule
def _iv(num: str) -> Alternatives:
    return _uniform([pair[0 if num == SG else 1] for pair in INTRANSITIVE_VERBS])


@_rule
def _tv(num: str) -> Alternatives:
    return _uniform([pair[0 if num == SG else 1] for pair in TRANSITIVE_VERBS])


@_rule
def _cop(num: str) -> Alternatives:
    return _uniform([pair[0 if num == SG else 1] for pair in COPULAS])


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


def _add_move(moves: dict, token: str, p: float, result: object, where: object) -> None:
    """Add probability ``p`` of emitting ``token`` with stack change ``result``. Two derivations
    may emit the same token only if they leave the same stack (then their probabilities add);
    otherwise the state would not be a function of the tokens."""
    if token in moves:
        old_p, old_result = moves[token]
        if old_result != result:
            raise GrammarError(f"token {token!r} is ambiguous in {where}")
        p += old_p
    moves[token] = (p, result)


@cache
def _outcomes(sym: Symbol) -> tuple[dict[str, Move], float]:
    """All ways ``sym`` can start: {token: (prob, symbols left pushed, top last)} and the
    probability that it derives nothing (then the symbol below it speaks)."""
    if isinstance(sym, str):
        return {sym: (1.0, ())}, 0.0
    moves: dict[str, Move] = {}
    p_empty = 0.0
    for q, rhs in _expand(sym):
        reach = q  # probability that rhs[:i] all derived nothing
        for i, child in enumerate(rhs):
            child_moves, child_empty = _outcomes(child)
            rest = tuple(reversed(rhs[i + 1 :]))
            for token, (p, pushed) in child_moves.items():
                _add_move(moves, token, reach * p, rest + pushed, sym)
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
    i = len(stack) - 1
    while _nullable(stack[i]):
        i -= 1
    return i


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
        for token, (p, pushed) in child_moves.items():
            _add_move(moves, token, reach * p, (level, pushed), segment)
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
    i = table.index.get(token)
    if i is None:
        expected = ", ".join(repr(t) for t in table.tokens[:8])
        raise ValueError(f"token {token!r} cannot come here (expected one of {expected}, ...)")
    cut = start + table.cuts[i]
    return table.nll[i], tuple(state[:cut]) + table.pushes[i], cut


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
    for j, token in enumerate([*tokens, END]):
        _, new_state, cut = _step(state, token)
        sym = state[cut]
        kind = _dependency_kind(sym)
        if kind is not None and born[cut] >= 0:
            source = tokens.index(token) if kind == "copy" else born[cut]
            spans.append((kind, source, j))
        born = born[:cut] + [j] * (len(new_state) - cut)
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
            i = bisect_right(table.cdf, uniforms[pos])
            pos += 1
            if i == len(table.tokens):  # u beyond a cdf that rounds to just under 1
                i -= 1
            nll += table.nll[i]
            token = table.tokens[i]
            if token == END:
                break
            out.append(token)
            del stack[start + table.cuts[i] :]
            stack.extend(table.pushes[i])
        lines.append(" ".join(out))
        nlls.append(nll)
        produced += len(out) + 1
    return lines, np.asarray(nlls, dtype=np.float64)
