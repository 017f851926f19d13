"""``--match-params N``: size every architecture to (about) the same non-embedding parameter count.

Fair comparisons between architectures need models of equal size. :func:`match_params` takes an
architecture, a preset and the user's config overrides, and returns new overrides whose model has
``|non_embedding - N| <= tolerance * N`` (5% by default), together with the achieved counts.

How a model is sized
--------------------
1. **Width first.** The depth (``n_layers``, as given or from the preset) is kept and the width
   (``d_model``) is searched for the count closest to the target. Models whose config also has a
   ``d_embed`` (the recurrent ones) get ``d_embed = d_model`` unless the user fixed ``d_embed``.
   ``d_ff`` is left alone, so its ``0 = 4 * d_model`` default scales with the width unless the
   user fixed it.
2. **Then depth**, only when no width at that depth lands within the tolerance (the target is
   below what one layer of the narrowest valid width costs, or the count jumps over it):
   ``n_layers`` from 1 to ``max(12, depth)`` is tried, and the (depth, width) within tolerance
   whose depth is closest to the original one wins (ties: the closer count, then the shallower).
   Depths above one whose narrowest valid width already overshoots are skipped (the count grows
   with the depth for every registered architecture).
3. Otherwise :class:`SizingError` (``where = "--match-params"``).

Every field the user set in ``overrides`` is kept, **except** the fields matching is about:
``d_model`` (always chosen by matching, even when the user set it) and ``n_layers`` (changed only
when step 2 is needed). ``d_embed`` follows ``d_model`` only when the user did not set it.

Validity is never re-implemented here: a width is valid when :func:`resolve_config` accepts it.
The grid of widths searched is ``w0, w0 + s, w0 + 2s, ...`` where ``w0`` is the narrowest valid
width and ``s`` the spacing of the valid widths (``n_heads`` for attention, ``2 * n_heads`` for
rope), both found by probing ``resolve_config``. The count is monotone non-decreasing in the width
for every registered architecture, so the search is a binary search; the chosen width is always
verified by counting (models are built on the meta device, so counting costs no memory), and a
few neighbours of the crossing point are counted too, in case of a local dip (a recurrent model
with a fixed ``d_embed`` loses its projection when ``d_model == d_embed``).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import torch

from lmbench.errors import SpecError
from lmbench.models import build_model, get_arch, resolve_config

__all__ = ["SizingError", "count_params", "match_params"]

WHERE = "--match-params"
MAX_WIDTH = 1 << 17  # widest model considered (131072)
MAX_DEPTH = 12  # depths 1..max(MAX_DEPTH, original depth) are tried when width alone fails
_PROBE_LIMIT = 4096  # widths probed to find the grid of valid widths
_WINDOW = 2  # grid neighbours counted on each side of the binary search's crossing point


class SizingError(SpecError):
    """No model of this architecture gets within tolerance of the ``--match-params`` target."""


# ---------------------------------------------------------------------------------------------
# counting


def count_params(
    arch: str, vocab_size: int, preset: str = "default", overrides: dict[str, Any] | None = None
) -> dict[str, int]:
    """``model.num_params()`` (``{"embedding", "non_embedding", "total"}``) of the model that
    :func:`build_model` would build, counted on the meta device (no memory, no RNG draws).

    Raises :class:`SpecError` for an invalid config, like :func:`build_model`.
    """
    overrides = dict(overrides or {})
    try:
        key = tuple(sorted(overrides.items()))
        hash(key)
    except TypeError:  # unhashable values: let build_model report them
        return _count(arch, vocab_size, preset, overrides)
    return dict(_count_cached(arch, vocab_size, preset, key))


@functools.lru_cache(maxsize=8192)
def _count_cached(
    arch: str, vocab_size: int, preset: str, key: tuple[tuple[str, Any], ...]
) -> dict[str, int]:
    return _count(arch, vocab_size, preset, dict(key))


def _count(arch: str, vocab_size: int, preset: str, overrides: dict[str, Any]) -> dict[str, int]:
    with torch.device("meta"):
        model = build_model(arch, vocab_size, preset, overrides)
    return dict(model.num_params())


# ---------------------------------------------------------------------------------------------
# matching


def match_params(
    arch: str,
    vocab_size: int,
    preset: str = "default",
    overrides: dict[str, Any] | None = None,
    target: int = 0,
    tolerance: float = 0.05,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Size ``arch`` so that its non-embedding parameter count is within ``tolerance * target``
    of ``target``; see the module docstring for the rules.

    Returns ``(new_overrides, counts)``: ``overrides`` with ``d_model`` (and ``d_embed`` when it
    follows the width, and ``n_layers`` when the depth had to change) replaced, and the achieved
    ``num_params()``. Raises :class:`SizingError` when no (depth, width) fits, and
    :class:`SpecError` when the other overrides are invalid whatever the width.
    """
    _check_target(target, tolerance)
    target = int(target)
    user = dict(overrides or {})
    sizing = get_arch(arch).sizing  # the registry declares the width, depth and followers
    if sizing is None:
        raise SizingError(WHERE, f"cannot size {arch}: its registry entry declares no width/depth")
    followers = [k for k in sizing.follows_width if k not in user]

    def with_width(base: dict[str, Any], width: int) -> dict[str, Any]:
        out = dict(base)
        out[sizing.width] = width
        for follower in followers:
            out[follower] = width
        return out

    grid = _width_grid(arch, preset, user, with_width)
    # the original depth: the user's, else the preset's (or the config default)
    depth0 = getattr(resolve_config(arch, preset, with_width(user, grid[0])), sizing.depth)

    high = (1.0 + tolerance) * target
    deepest = max(MAX_DEPTH, depth0)  # lowered once the narrowest width is already too big

    def best_at(depth: int) -> tuple[float, dict[str, Any], dict[str, int]] | None:
        nonlocal deepest
        base = dict(user)
        if depth != depth0:
            base[sizing.depth] = depth
        found = _best_width(arch, vocab_size, preset, base, with_width, grid, target)
        if found is None:
            return None
        ovr, counts, narrowest = found
        if narrowest > high:  # deeper models only cost more: no need to try them
            deepest = min(deepest, depth - 1)
        return abs(counts["non_embedding"] - target) / target, ovr, counts

    first = best_at(depth0)
    if first is not None and first[0] <= tolerance:
        return first[1], first[2]

    best = _nearest_depth_fit(best_at, depth0, lambda: deepest, tolerance)
    if best is not None:
        return best[1], best[2]
    closest = f"; the closest is {first[2]['non_embedding']:,}" if first is not None else ""
    raise SizingError(
        WHERE,
        f"cannot size {arch} ({preset}) to {target:,} non-embedding parameters within "
        f"{tolerance:.0%} at depth {depth0} or any depth from 1 to {max(MAX_DEPTH, depth0)}"
        f"{closest}",
    )


def _nearest_depth_fit(best_at, depth0: int, deepest, tolerance: float):
    """Width alone does not get there: the fit within tolerance at the depth nearest ``depth0``
    (ties: the closer count). ``deepest()`` shrinks as deeper models are found to overshoot."""
    for dist in range(1, max(MAX_DEPTH, depth0)):
        best = None
        for depth in sorted({depth0 - dist, depth0 + dist}):
            if not 1 <= depth <= deepest():
                continue
            found = best_at(depth)
            if found is not None and found[0] <= tolerance and (best is None or found[0] < best[0]):
                best = found
        if best is not None:
            return best
    return None


def _check_target(target: Any, tolerance: Any) -> None:
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or target < 1:
        raise SizingError(WHERE, f"expected a positive integer parameter count, got {target!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0.0 <= tolerance < 1.0:
        raise SizingError(WHERE, f"tolerance must be in [0, 1), got {tolerance!r}")


def _width_grid(arch, preset, user, with_width) -> tuple[int, int]:
    """``(w0, step)``: the narrowest width ``resolve_config`` accepts and the spacing of the
    valid widths (gcd of the gaps between the first few valid ones)."""
    valid: list[int] = []
    last_error: SpecError | None = None
    for width in range(1, _PROBE_LIMIT + 1):
        try:
            resolve_config(arch, preset, with_width(user, width))
        except SpecError as error:
            last_error = error
            continue
        valid.append(width)
        if len(valid) == 4:
            break
    if not valid:
        # the other overrides are invalid whatever the width: report the user's own config's error
        try:
            resolve_config(arch, preset, user)
        except SpecError:
            raise
        raise SizingError(
            WHERE, f"no width from 1 to {_PROBE_LIMIT} is valid for {arch}: {last_error}"
        ) from None
    step = 0
    for narrower, wider in zip(valid, valid[1:], strict=False):
        step = math.gcd(step, wider - narrower)
    return valid[0], step or 1


def _best_width(arch, vocab_size, preset, base, with_width, grid, target):
    """The grid width whose non-embedding count is closest to ``target`` at ``base``'s depth:
    ``(overrides, counts, non-embedding count of the narrowest grid width)``, or ``None`` when no
    grid width is valid."""
    w0, step = grid
    max_index = (MAX_WIDTH - w0) // step

    cache: dict[int, int | None] = {}

    def ne(index: int) -> int | None:
        if index not in cache:
            try:
                counts = count_params(arch, vocab_size, preset, with_width(base, w0 + index * step))
                cache[index] = counts["non_embedding"]
            except SpecError:
                cache[index] = None
        return cache[index]

    def ne_mono(start: int) -> int:
        """For the search: invalid grid points borrow the next valid point's count."""
        for index in range(start, min(start + 8, max_index) + 1):
            count = ne(index)
            if count is not None:
                return count
        return -1

    # smallest index with count >= target: gallop, then bisect
    lo, hi = -1, 0  # invariant: ne(lo) < target (lo = -1: nothing), ne(hi) >= target or hi = max_index
    while hi < max_index and ne_mono(hi) < target:
        lo, hi = hi, min(max(1, 2 * hi), max_index)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ne_mono(mid) >= target:
            hi = mid
        else:
            lo = mid
    # verify: count the crossing point's neighbours and keep the closest valid one
    best: tuple[int, int, int] | None = None  # (|error|, width, index)
    for index in range(max(0, hi - _WINDOW), min(max_index, hi + _WINDOW) + 1):
        count = ne(index)
        if count is None:
            continue
        cand = (abs(count - target), w0 + index * step, index)
        if best is None or cand < best:
            best = cand
    if best is None:
        return None
    ovr = with_width(base, best[1])
    return ovr, count_params(arch, vocab_size, preset, ovr), ne_mono(0)
