"""The grammar of the ``synthetic`` corpus: its vocabulary and its probabilistic rules.

Every rule returns its alternatives as ``[(probability, right-hand side), ...]``; symbols are
words, rule names, or ``(rule, *arguments)`` tuples. :mod:`lmbench.data.synthetic` turns the rules
into the LL(1) pushdown machine that generates lines and scores their exact probability.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

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
def _named(name: str) -> Alternatives:
    """After a sentence-initial name: reported speech, or a meeting with a second name."""
    speech = ("said", ("QUOTED", ("CLAUSE", 1)), "and", ("COPY_SUBJ", name), ".")
    return [(0.5, speech), (0.5, ("met", ("MET", name)))]


@_rule
def _met(name: str) -> Alternatives:
    """``name met other <aside> and name <past verb> other``: two names to copy, in order."""
    others = [m for m in NAMES if m != name]
    return [
        (1.0 / len(others), (m, ("MEET_MIDDLE",), "and", ("COPY", name), ("PAST",), ("COPY", m), "."))
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
def _copy(name: str) -> Alternatives:
    """A name that must repeat an earlier one: probability 1, but only given memory."""
    return _one(name)


@_rule
def _copy_subj(name: str) -> Alternatives:
    # The verb is pushed here, with the copied name, so its agreement span starts at the copy.
    return _one(name, ("VP", SG, 1))


@_rule
def _past() -> Alternatives:
    return _uniform(PAST_VERBS)


@_rule
def _quoted(content: Symbol) -> Alternatives:
    return _one('"', content, '"')


@_rule
def _bracketed(depth: int) -> Alternatives:
    return [(0.5, ("(", ("ASIDE", depth), ")")), (0.5, ("[", ("ASIDE", depth), "]"))]


@_rule
def _aside(depth: int) -> Alternatives:
    """Bracket content: a full clause (with its own agreement) or a contrasting noun phrase."""
    return _weighted(
        (0.55, _one(("CLAUSE", depth))),
        (0.45, _uniform(ASIDE_WORDS, then=(("OBJ", depth),))),
    )


@_rule
def _clause(depth: int) -> Alternatives:
    """A subject and its verb phrase. The verb phrase is pushed by the token that fixes the
    subject's number (noun, name or pronoun), so the state carries the number in between."""
    dets = _determiners(then=("ANIMATE", "subject", depth))
    pronouns = [(1.0 / len(PRONOUNS), (p, ("VP", num, depth))) for p, num in PRONOUNS.items()]
    names = _uniform(NAMES, then=(("MODS", SG, depth, 0), ("VP", SG, depth)))
    if depth == 0:  # names at the start of a sentence begin the copy frames instead
        return _weighted((0.85, dets), (0.15, pronouns))
    return _weighted((0.60, dets), (0.15, pronouns), (0.25, names))


def _determiners(then: tuple) -> Alternatives:
    """``det NOMINAL`` for each determiner; the NOMINAL only allows the numbers the det allows.
    ``then`` = (noun class, continuation, depth) of the NOMINAL."""
    return [(p, (det, ("NOMINAL", nums, *then))) for det, (nums, p) in DETERMINERS.items()]


@_rule
def _nominal(nums: tuple[str, ...], noun_class: str, cont: str, depth: int) -> Alternatives:
    """An optional adjective, then a noun of an allowed number."""
    noun = ("NOUN", nums, noun_class, cont, depth)
    return _weighted((0.25, _uniform(ADJECTIVES, then=(noun,))), (0.75, _one(noun)))


@_rule
def _noun(nums: tuple[str, ...], noun_class: str, cont: str, depth: int) -> Alternatives:
    """A noun; its number selects what is pushed after it (``cont``):
    "subject" -> modifiers then an agreeing verb phrase; "embedded" -> an agreeing transitive
    verb (object relative clause); "none" -> nothing."""
    pairs = ANIMATE_NOUNS if noun_class == "ANIMATE" else NOUNS
    alts: Alternatives = []
    for num in nums:
        words = [pair[0 if num == SG else 1] for pair in pairs]
        alts += _uniform(words, 1.0 / len(nums), then=_continuation(cont, num, depth))
    return alts


def _continuation(cont: str, num: str, depth: int) -> Rhs:
    if cont == "subject":
        return (("MODS", num, depth, 0), ("VP", num, depth))
    if cont == "embedded":
        return (("TV", num),)
    return ()


@_rule
def _obj(depth: int) -> Alternatives:
    """An object noun phrase (no continuation): det [adj] noun, or a name."""
    return _weighted(
        (0.8, _determiners(then=("ANY", "none", depth))),
        (0.2, _uniform(NAMES)),
    )


@_rule
def _pp(depth: int) -> Alternatives:
    return _uniform(PREPOSITIONS, then=(("OBJ", depth),))


@_rule
def _mods(num: str, depth: int, pp_count: int) -> Alternatives:
    """Modifiers between a subject and its verb: the material agreement has to bridge.
    Prepositional phrases may chain (``pp_count`` counts them); a relative clause or a bracket ends the
    list. Stopping is itself the choice of the verb (or of the next modifier's first token)."""
    stop = (0.25, 0.60)[pp_count] if pp_count < 2 else 1.0
    if stop == 1.0:
        return _one()
    go = 1.0 - stop
    bracket = 0.20 if depth < MAX_DEPTH else 0.0
    return _weighted(
        (stop, _one()),
        (go * 0.40, _one(("PP", depth), ("MODS", num, depth, pp_count + 1))),
        (go * 0.25, _one("who", ("RC_VP", num, depth))),
        (go * (0.35 - bracket), _one("that", ("EMBEDDED_SUBJ", depth))),
        (go * bracket, _one(("BRACKETED", depth + 1))),
    )


@_rule
def _embedded_subj(depth: int) -> Alternatives:
    """Subject of an object relative clause (``the dogs that the cat sees run``): its own number,
    an attractor for the outer agreement."""
    return _weighted(
        (0.7, _determiners(then=("ANIMATE", "embedded", depth))),
        (0.15, [(1.0 / len(PRONOUNS), (p, ("TV", num))) for p, num in PRONOUNS.items()]),
        (0.15, _uniform(NAMES, then=(("TV", SG),))),
    )


@_rule
def _rc_vp(num: str, depth: int) -> Alternatives:
    """Verb phrase of a subject relative clause: agrees with the head noun, has no tail (so
    the main verb, which also agrees, follows directly)."""
    return _weighted(
        (0.4, _one(("IV", num))),
        (0.4, _one(("TV", num), ("OBJ", depth))),
        (0.2, _one(("COP", num), ("ADJ",))),
    )


@_rule
def _vp(num: str, depth: int) -> Alternatives:
    return _weighted(
        (0.35, _one(("IV", num), ("TAIL", depth))),
        (0.35, _one(("TV", num), ("OBJ", depth), ("TAIL", depth))),
        (0.20, _one(("COP", num), ("COMPLEMENT",), ("TAIL", depth))),
        (0.10, _one(HAVE[0 if num == SG else 1], ("OBJ", depth), ("TAIL", depth))),
    )


@_rule
def _tail(depth: int) -> Alternatives:
    """What may follow a verb phrase: nothing, an adverb, a place, or a reason clause."""
    because = 0.1 if depth < MAX_DEPTH else 0.0
    return _weighted(
        (0.65 - because, _one()),
        (0.20, _uniform(ADVERBS)),
        (0.15, _one(("PP", depth))),
        (because, _one("because", ("CLAUSE", depth + 1))),
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


