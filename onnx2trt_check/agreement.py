"""Agreement figures: the share of decisions a target keeps. Top-1/top-5 of class-score outputs, the
share of equal elements of an integer or bool output, a TopK's selected items in any order, and the
floor's slack for few rows. compare.py holds the verdicts built on them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def top_k_agreement(reference: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> tuple[float | None, float | None]:
    """For class-score outputs ([N, C] float, C >= 2): the share of rows whose reference argmax is
    the target's argmax (top-1), and is among the target's 5 best (top-5, only when C > 5)."""
    if not reference or not all(_is_class_scores(r) for r in reference):
        return None, None
    # Feed by feed: the class count may differ between feeds (a TopK whose k does), and concatenating
    # rows of 4 and 5 columns raised.
    pairs = [(np.asarray(r), np.asarray(t)) for r, t in zip(reference, target) if len(r)]
    if not pairs:  # no rows (scores gathered for no detection): an agreement of NaN crashed the floor (review17)
        return None, None
    top1 = float(np.mean(np.concatenate([t.argmax(axis=1) == r.argmax(axis=1) for r, t in pairs])))
    if any(r.shape[1] <= 5 for r, _ in pairs):
        return top1, None
    in_top5 = [np.any(np.argsort(-t, axis=1, kind="stable")[:, :5] == r.argmax(axis=1)[:, None], axis=1) for r, t in pairs]
    return top1, float(np.mean(np.concatenate(in_top5)))


def discrete_agreement(ref: np.ndarray, got: np.ndarray) -> float | None:
    """For an integer or bool output (a label, a mask of labels, a decision): the share of elements
    that are equal, its top-1 agreement. SQNR and cosine of class numbers say nothing about how many
    decisions changed (4 of 20 labels moved by one read 46 dB). None for an empty output."""
    return float(np.mean(ref == got)) if ref.size else None


def selection_agreement(reference: Sequence[np.ndarray], target: Sequence[np.ndarray], axis: int) -> float | None:
    """For a TopK's indices: the share of selected items (the indices along `axis`, per row) that the
    target selects too, in any order. None for an empty output. Feed by feed, as (row, item) pairs: a k
    that depends on the data (min(100, candidates)) differs between feeds, and k = 0 has no rows to
    reshape to; either crashed (review17)."""
    kept = total = 0
    for r, t in zip(reference, target):
        if np.size(r):
            rows = [np.moveaxis(np.asarray(a), axis, -1).reshape(-1, np.shape(a)[axis]) for a in (r, t)]
            items = np.unique(np.concatenate([a.ravel() for a in rows]), return_inverse=True)[1].reshape(2, -1)
            row = np.repeat(np.arange(len(rows[0]), dtype=np.int64), rows[0].shape[1]) * (items.max() + 1)
            kept += np.intersect1d(row + items[0], row + items[1]).size  # the (row, item) pairs both select
            total += np.size(r)
    return kept / total if total else None  # TopK selects each item once


def _is_class_scores(array: np.ndarray) -> bool:
    array = np.asarray(array)
    return array.ndim == 2 and array.shape[1] >= 2 and array.dtype.kind == "f"


def allowed_disagreements(floor: float, rows: int, *, alone: bool = False) -> int:
    """Rows whose top-1 may differ under a top-1 floor: the floor as a rate, except that fewer rows
    than one disagreement needs (under 20 for 95%) still allow one; a rate over 16 rows moves in
    steps of 6%, so one near-tie would fail a model that agrees everywhere else. A floor of 1 allows
    none. `alone`: the floor is the output's only rule (an integer output under int8 or fp16), so it
    never lets every row differ: one label or a 0-d count passed whatever it held (review17)."""
    if floor >= 1.0:
        return 0
    allowed = max(1, math.floor((1.0 - floor) * rows + 1e-9))
    return min(allowed, max(rows - 1, 0)) if alone else allowed


MIN_CLASS_ELEMENTS = 100  # a class this large is judged on its own: fewer flip at boundaries by chance
CLASS_SLACK = 4.0  # a class may lose this many times the share the floor allows over all elements


def class_floor(floor: float) -> float:
    """The share each class must keep: 1 - CLASS_SLACK x (1 - floor), 80% under int8's 95%. Why not the
    floor itself: a small class is mostly boundary, where near-tied logits flip (a random-init DeepLab's
    honest int8 kept 94% of its smallest class, 98.2% of the mask); a lost class keeps nothing."""
    return max(0.0, 1.0 - CLASS_SLACK * (1.0 - floor))


def worst_class(ref: np.ndarray, got: np.ndarray, floor: float) -> tuple[int, float, int] | None:
    """(label, share of its elements kept, its element count) of the reference class of at least
    MIN_CLASS_ELEMENTS elements that keeps the fewest, below class_floor(floor); None when every such
    class keeps enough. The share of equal elements over a whole mask lets a rare class go (hunt17:
    an int8 segmentation mask with class 2 merged into class 1 kept 96.6% of its pixels)."""
    # One pass over the elements, not one per class: an integer output of 10^7 elements with 10^5
    # values (a depth map cast to int, token ids) took 300 s class by class (review17).
    labels, inverse, counts = np.unique(ref, return_inverse=True, return_counts=True)
    kept = np.bincount(inverse.ravel(), weights=(ref == got).ravel(), minlength=labels.size) / counts
    short = np.flatnonzero((counts >= MIN_CLASS_ELEMENTS) & (kept < class_floor(floor)))
    if not short.size:
        return None
    index = short[np.argmin(kept[short])]
    return int(labels[index]), float(kept[index]), int(counts[index])


def sorts_every_item(indices: np.ndarray, axis: int) -> bool:
    """Whether each row of a TopK's indices holds every position 0..k-1 of its axis: a sort of the
    whole axis, whose indices say nothing as a set (review17). The graph shows it where the axis has
    a static size (output_layout); this sees it where the size is free."""
    rows = np.sort(np.moveaxis(np.asarray(indices), axis, -1), axis=-1)
    return rows.shape[-1] >= 2 and bool(np.array_equal(rows, np.broadcast_to(np.arange(rows.shape[-1]), rows.shape)))
