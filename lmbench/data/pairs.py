"""``synthetic-pairs``: an embedded prompt -> completion task where BLEU is meaningful.

Every record is an instruction over a short sequence of NATO-alphabet words and its exact answer::

    prompt "reverse: golf alpha kilo"   completion "kilo alpha golf"
    prompt "sort: golf alpha kilo"      completion "alpha golf kilo"
    prompt "next: golf alpha kilo"      completion "hotel bravo lima"   (each word's successor)

The three tasks need different abilities: ``next`` is a per-token map (local), ``reverse`` needs
position-aware recall of the whole prompt and ``sort`` needs comparisons across it, so an
encoder-decoder, a decoder-only Transformer and an LSTM separate on them. The answer is a
deterministic function of the prompt, so a perfect model scores BLEU = 1. Records are drawn from
``numpy.random.default_rng(seed)``; ``size`` is the approximate total number of words.
"""

from __future__ import annotations

import numpy as np

NAME = "synthetic-pairs"
VERSION = 1  # bump when the generator's output changes (part of the cache fingerprint)

WORDS = [  # in alphabetical order: "sort" and "next" use it
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
    "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
    "whiskey", "xray", "yankee", "zulu",
]
TASKS = ("reverse", "sort", "next")
MIN_LEN, MAX_LEN = 3, 10


def answer(task: str, words: list[str]) -> list[str]:
    """The exact completion of ``task`` applied to ``words``."""
    if task == "reverse":
        return words[::-1]
    if task == "sort":
        return sorted(words)
    if task == "next":
        return [WORDS[(WORDS.index(w) + 1) % len(WORDS)] for w in words]
    raise ValueError(f"unknown task {task!r}")


def generate_pairs(size: int, seed: int) -> list[tuple[str, str]]:
    """About ``size`` words of (prompt, completion) records, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    mean_words = 1 + (MIN_LEN + MAX_LEN)  # task word + prompt + completion, on average
    out = []
    for _ in range(max(size // mean_words, 1)):
        task = TASKS[int(rng.integers(len(TASKS)))]
        length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        words = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=length)]
        out.append((f"{task}: " + " ".join(words), " ".join(answer(task, words))))
    return out
