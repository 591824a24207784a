"""Signal-to-noise figures of a target's output against the reference's: the plain SQNR, the SQNR of
the varying part, and the SQNR over the elements of a typical scale; and the cosine. compare.py
holds the verdicts built on them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def cosine_similarity(ref: np.ndarray, got: np.ndarray) -> float:
    """1.0 for identical directions; two all-zero vectors count as identical. Within [-1, 1]: the
    rounding of the norms gave 1.0000000000000002 for two equal outputs (numpy 2.4), which a
    baseline then refused to record as out of range."""
    if np.array_equal(ref, got):
        return 1.0
    norm = float(np.linalg.norm(ref) * np.linalg.norm(got))
    if norm == 0.0:
        return 1.0 if not np.any(ref) and not np.any(got) else 0.0
    return float(np.clip(np.dot(ref, got) / norm, -1.0, 1.0))


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 10*log10(sum ref^2 / sum (ref-got)^2); inf when exact."""
    noise = float(np.sum((ref - got) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def centered_sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """SQNR of the part of `ref` that varies: 10*log10(sum (ref - mean ref)^2 / sum (ref-got)^2);
    NaN when the reference does not vary (no such part), inf when exact. A constant offset in an
    output (100 + logits) made the plain SQNR read 37 dB for an int8 model whose logits were all
    halved: the offset is signal that any target reproduces."""
    noise = float(np.sum((ref - got) ** 2))
    signal = float(np.sum((ref - ref.mean()) ** 2)) if ref.size else 0.0
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return math.nan
    return 10.0 * math.log10(signal / noise)


ATYPICAL_SPREADS = 10.0  # how far from the median element, in robust standard deviations, an element may be atypical
# ... and how much larger than the typical elements' RMS its own RMS must be: 127 int8 steps spread
# over a range 100x the rest's leave the rest about one step.
OTHER_SCALE = 100.0


def typical_elements_sqnr(reference: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> tuple[float, int]:
    """(centered_sqnr_db over the elements of a typical scale, how many elements were left out), or
    (NaN, 0) when none is atypical.

    An element is a position of a feed's output row (axis 0 is the sample axis); it is atypical when its
    mean over the samples lies more than ATYPICAL_SPREADS robust standard deviations (1.4826 x the
    median absolute deviation) from the median element's mean and its RMS is more than OTHER_SCALE
    times the other elements' (review16: YOLOv8's score prior puts stride-8 scores at 1e-5 and
    stride-32 ones 16x higher, many spreads apart on one scale; leaving those out failed our own
    honest int8 at 12.9 dB of scores that barely move, where the scores part read 57.7 dB). Such elements carry the whole output's
    signal, so the SQNR over all of them judges only them: a suppressed class's logit bias of -1e4
    carried an int8 classifier with every weight 30% off past the 20 dB floor at 72 dB (review14),
    and pixel box coordinates carried class scores 18 dB off past it at 74 dB (zoo13). Why not each
    element centred on its own mean: a random-init or collapsed net's outputs barely move between
    inputs, and that failed 14 honest int8 targets of the foreign-model zoos at 13-19.7 dB. Why not
    per slice: a column of near-zero scores has no signal to judge."""
    groups: dict[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]] = {}
    for r, t in zip(reference, target):
        r, t = np.asarray(r, np.float64), np.asarray(t, np.float64)
        if r.ndim:  # rows of the elements' count: reshape(-1) of a feed with no rows (an NMS that selected nothing) raised
            width = math.prod(r.shape[1:])
            groups.setdefault(r.shape[1:], []).append((r.reshape(len(r), width), t.reshape(len(t), width)))
    kept_ref, kept_got, left_out = [], [], 0
    for pairs in groups.values():
        ref, got = np.concatenate([r for r, _ in pairs]), np.concatenate([t for _, t in pairs])
        finite = np.all(np.isfinite(ref) & np.isfinite(got), axis=0)
        typical = typical_columns(ref[:, finite])
        left_out += int(np.count_nonzero(~typical))
        kept_ref.append(ref[:, finite][:, typical].ravel())
        kept_got.append(got[:, finite][:, typical].ravel())
    if not left_out:
        return math.nan, 0
    return centered_sqnr_db(np.concatenate(kept_ref), np.concatenate(kept_got)), left_out


def typical_columns(values: np.ndarray) -> np.ndarray:
    """For finite [samples, elements] values, which elements are of a typical scale (see
    typical_elements_sqnr): not both more than ATYPICAL_SPREADS robust standard deviations from the
    median element's mean and more than OTHER_SCALE times the others' RMS. The median and its spread
    are the varying elements' where some vary: elements constant over the samples are no decisions, and
    where they were the majority (six suppressed classes at -1e4 of ten) they were the typical scale,
    the spread 0, and the logits beside them of a typical scale too (review17: top-1 0% passed int8)."""
    if not values.size:
        return np.ones(values.shape[1], bool)
    means = values.mean(axis=0)
    varies = np.any(values != values[:1], axis=0)
    basis = means[varies] if varies.any() else means
    distance = np.abs(means - np.median(basis))
    typical = distance <= ATYPICAL_SPREADS * 1.4826 * np.median(np.abs(basis - np.median(basis)))
    if not typical.all():  # far by spread but on the same scale: kept (stride levels of scores 16x apart)
        typical |= np.sqrt(np.mean(values**2, axis=0)) <= OTHER_SCALE * float(np.sqrt(np.mean(values[:, typical] ** 2)))
    return typical
