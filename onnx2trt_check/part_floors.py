"""The SQNR floor on each part a Concat joins an output from (output_layout.Segments), where the
floor over the whole output measures the part of the largest scale (a detector's pixel boxes beside
its class scores, a KV cache's long past beside the new token's key)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .output_layout import Segments
from .sqnr import centered_sqnr_db, sqnr_db
from .tolerance import PRECISION_PROFILES


def part_floor_problems(segments: Segments, reference: Sequence[np.ndarray], target: Sequence[np.ndarray], min_sqnr_db: float,
                        whole_sqnr_db: float, elementwise: tuple[float, float] | None = None) -> tuple[dict[str, float], list[str]]:
    """The centred SQNR of each part ({part: dB}) and the problems of those below `min_sqnr_db`.
    Nothing where a feed's output does not have room for the parts along their axis: the graph's
    sizes do not hold there. A part of free size (None) takes what the others leave of each feed's
    output, so a cache whose past length differs between feeds keeps its parts (review17). Beside an
    element-wise rule `elementwise` (atol, rtol) wider than the profiles' own, only the parts it cannot fail are judged, by their
    own SQNR: every reference value within atol + rtol * |ref| of zero, where an all-zero part passes it (mut20: a
    detector's scores taken from the wrong anchor passed atol=2,min_sqnr_db=30 at -1.8 dB, its pixel
    boxes carrying the whole output's 52.8 dB)."""
    per_feed = _bounds_per_feed(segments, reference)
    if per_feed is None or (elementwise is not None and not _widened(elementwise)):
        return {}, []
    names = [name for name, _ in segments.parts]
    figures, problems = {}, []
    for index, (part, start, stop) in enumerate(per_feed[0]):
        spans = [bounds[index][1:] for bounds in per_feed]
        if all(stop == start for start, stop in spans):
            continue
        part = part if names.count(part) == 1 else f"{part}#{index}"  # Concat(a, a): one figure each (review16)
        ref = np.concatenate([np.take(np.asarray(r, np.float64), range(*span), axis=segments.axis).ravel() for r, span in zip(reference, spans)])
        got = np.concatenate([np.take(np.asarray(t, np.float64), range(*span), axis=segments.axis).ravel() for t, span in zip(target, spans)])
        finite = np.isfinite(ref) & np.isfinite(got)
        if elementwise is not None and np.any(np.abs(ref[finite]) > elementwise[0] + elementwise[1] * np.abs(ref[finite])):
            continue  # beyond the element-wise rule's reach from zero: it fails a wrong part itself
        # Beside an element-wise rule the part's own SQNR, not its centred one: a detector that finds
        # nothing has scores near 0.0025 whose variation fp16 rounds away (an honest fp16 target failed
        # at 21.8 dB centred under the default fp16 profile: review20), while scores from the wrong
        # anchor read about 3 dB either way.
        measure = centered_sqnr_db if elementwise is None else sqnr_db
        value = measure(ref[finite], got[finite]) if finite.any() else math.nan
        if math.isnan(value) and np.any(ref[finite]):  # a constant part (a batch index, a fixed score): its own value is the signal
            value = sqnr_db(ref[finite], got[finite])    # (review16: a column of 1.0 given as 0 passed beside the others)
        figures[part] = value
        if value < min_sqnr_db:  # NaN: an all-zero part, left to the whole output's figures (float noise would fail it)
            where = f"positions {start}-{stop - 1}" if len(set(spans)) == 1 else f"positions from {start} on"
            problems.append(f"SQNR of the part '{part}' ({where} of axis {segments.axis}, joined by the output's Concat) "
                            f"{value:.2f} dB below the floor {min_sqnr_db} dB (over the whole output {whole_sqnr_db:.2f} dB: "
                            f"the other parts' scale carries it)")
    return figures, problems


def _widened(elementwise: tuple[float, float]) -> bool:
    """Whether an element-wise rule (atol, rtol) is wider than every precision profile's own: one the
    user set, sized for another part's scale (2 pixels). A profile's own rule is what that precision
    loses anywhere, tiny parts included (review20: under fp16's atol 0.05, an honest detector that finds
    nothing failed its score part, its scores near 0.0025)."""
    return any(value > max((getattr(p, key) or 0.0) for p in PRECISION_PROFILES.values())
               for value, key in zip(elementwise, ("atol", "rtol")))


def _bounds_per_feed(segments: Segments, reference: Sequence[np.ndarray]) -> list[list[tuple[str, int, int]]] | None:
    """Each feed's (part, start, stop) list, or None where some feed's output cannot hold the parts:
    not the known parts' total, or with a free part less than that total."""
    known = sum(size for _, size in segments.parts if size is not None)
    free = any(size is None for _, size in segments.parts)
    sizes = [np.shape(r)[segments.axis] if np.ndim(r) > segments.axis else -1 for r in reference]
    if not sizes or any(size < known if free else size != known for size in sizes):
        return None
    return [list(segments.bounds(size)) for size in sizes]
