"""Per-output accuracy metrics of a target against a reference, and the verdict under a tolerance.

Every metric is computed in float64 over all feeds of an output at once, so "max abs error" means
the worst element anywhere in the check data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from .agreement import (
    allowed_disagreements,
    class_floor,
    discrete_agreement,
    selection_agreement,
    sorts_every_item,
    top_k_agreement,
    worst_class,
)
from .output_layout import NMS_ADVICE, OutputLayout, Segments
from .part_floors import part_floor_problems
from .sqnr import centered_sqnr_db, cosine_similarity, sqnr_db, typical_columns, typical_elements_sqnr
from .tolerance import Tolerance

MAX_MISMATCHES_SHOWN = 5


@dataclasses.dataclass
class Mismatch:
    feed: int
    index: tuple[int, ...]
    reference: float
    actual: float

    def __str__(self) -> str:
        err = abs(self.actual - self.reference)
        return f"feed {self.feed} at {list(self.index)}: ref {self.reference:.6g}, got {self.actual:.6g} (abs err {err:.3g})"


@dataclasses.dataclass
class OutputStats:
    """The figures of one output. Errors are of target against reference."""

    name: str
    elements: int
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    sqnr_db: float
    ref_nonfinite: int
    target_nonfinite: int
    mismatches: int = 0
    mismatch_percent: float = 0.0
    first_mismatches: list[Mismatch] = dataclasses.field(default_factory=list)
    needed_atol: float = 0.0
    needed_rtol: float = 0.0
    top1: float | None = None
    top5: float | None = None
    rows: int = 0  # rows of class scores top-1/top-5 were computed over
    # Rows whose top-1 differs but where the reference's own top-1 margin is within the noise the
    # SQNR floor allows (not counted against the top-1 floor: _near_ties), and the reference's
    # top-1 margins on the first near-tie rows and on the first rows that do count.
    near_ties: int = 0
    near_tie_margins: list[float] = dataclasses.field(default_factory=list)
    counted_margins: list[float] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    accepts_zero: bool = False  # the rules in force would pass an all-zero output (_accepts_zero)
    # SQNR of the varying part: the reference's mean removed from the signal (centered_sqnr_db).
    centered_sqnr_db: float = math.nan
    # The same over the elements of a typical scale, and how many were left out (typical_elements_sqnr).
    typical_sqnr_db: float = math.nan
    atypical_elements: int = 0
    # The centred SQNR of each part the graph joins the output from (output_layout), by part name.
    part_sqnr_db: dict[str, float] = dataclasses.field(default_factory=dict)
    nonfinite_lost: int = 0  # reference NaN/Inf elements the target gives otherwise (_error_stats)
    discrete: bool = False  # integer or bool: under a top-1 floor its agreement alone judges it (_compare)
    # The class of a mask that keeps too few of its elements: (label, share kept, elements) (agreement.worst_class).
    worst_class: tuple[int, float, int] | None = None
    # The class the target gives to too many elements of other classes: (label, share right, elements given).
    worst_given_class: tuple[int, float, int] | None = None
    # The integer atol that would meet the agreement floor, for a failing integer output (_quantity_hint).
    atol_for_floor: float | None = None

    @property
    def passed(self) -> bool:
        return not self.problems

    def figures(self) -> dict:
        """JSON-ready key figures (no arrays)."""
        data = dataclasses.asdict(self)
        data["first_mismatches"] = [str(m) for m in self.first_mismatches]
        data["passed"] = self.passed
        return data


def compare_output(name: str, reference: Sequence[np.ndarray], target: Sequence[np.ndarray], tolerance: Tolerance,
                   layout: OutputLayout | None = None) -> OutputStats:
    """Compare one output across feeds (`reference[i]` and `target[i]` come from feed i). With the
    output's `layout` (output_layout): the SQNR floor also holds for each part a Concat joins it
    from (beside an element-wise rule, those it cannot fail: part_floor_problems); a TopK's indices
    are compared as the set each row selects."""
    layout = layout or OutputLayout()
    stats = _compare(name, reference, target, tolerance, layout.topk_axis, ranked=layout.ranked)
    if layout.segments is not None and (tolerance.min_sqnr_db or 0) > 0 and not _is_discrete(reference):
        _apply_part_floors(stats, layout.segments, reference, target, tolerance)
        if layout.segments.inner is not None:  # the split each part shares (output_layout.Segments.inner)
            _apply_part_floors(stats, layout.segments.inner, reference, target, tolerance)
    if layout.after_nms and _shape_problem(reference, target):
        stats.problems.append(NMS_ADVICE)
    if stats.passed:
        stats.accepts_zero = _accepts_zero(name, reference, tolerance)
    return stats


def _compare(name: str, reference: Sequence[np.ndarray], target: Sequence[np.ndarray], tolerance: Tolerance,
             topk_axis: int | None = None, *, ranked: bool = False) -> OutputStats:
    shape_problem = _shape_problem(reference, target)
    if shape_problem:
        return _failed_shapes(name, reference, shape_problem)
    if topk_axis is not None and all(sorts_every_item(r, topk_axis) for r in reference):
        topk_axis = None  # a sort of the whole axis: its order is what it says
    if _is_discrete(reference) and tolerance.min_top1 is not None and tolerance.atol is not None and tolerance.atol >= 1:
        # An atol the user set on integers (keypoint coordinates, counts): agreement within it.
        # Only the agreement counts them equal: the figures are the target's own (review17: every label
        # moved by one read 'max abs 0, SQNR inf').
        close = [np.abs(np.asarray(r, np.int64) - np.asarray(t, np.int64)) <= tolerance.atol for r, t in zip(reference, target)]
        agreed = [np.where(c, r, t) for c, r, t in zip(close, reference, target)]
    else:
        agreed = target
    if _is_discrete(reference) and tolerance.min_top1 is not None:
        # Labels, a mask of classes, a TopK's indices: an element is the same class or not. The
        # agreement floor judges them alone: the SQNR and cosine of class numbers, and an atol on
        # them, count a flip between neighbouring classes as less wrong than one between distant
        # ones (zoo16: an int8 DeepLab's argmax mask failed at 19.8 dB with 97.9% of its pixels equal).
        tolerance = dataclasses.replace(tolerance, atol=None, rtol=None, min_cosine=None, min_sqnr_db=None)
    elif _is_discrete(reference) and topk_axis is not None:
        # Exact, but as the set each row selects: the order among scores equal to the last ulp is the
        # kernel's choice (an fp32 ORT run swapped two of 100 indices of an honest detector).
        reference = [np.sort(r, axis=topk_axis) for r in reference]
        target = [np.sort(t, axis=topk_axis) for t in target]
        tolerance = dataclasses.replace(tolerance, rtol=0.0)
    elif _is_discrete(reference) and tolerance.rtol is not None:
        # An index, token id, count or flag is right or wrong: a relative tolerance would let token
        # 999 come back as 990 under fp16's rtol 1e-2 (or id 10001 as 10000 under fp32's 1e-4).
        tolerance = dataclasses.replace(tolerance, rtol=0.0)
    ref = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in reference])
    got = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in target])
    stats = _error_stats(name, ref, got)
    _apply_elementwise(stats, reference, ref, got, tolerance)
    if _is_discrete(reference):  # the mean of class numbers is no offset: agreement judges them
        kept = got if agreed is target else np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in agreed])
        agreement = discrete_agreement(ref, kept) if topk_axis is None else selection_agreement(reference, agreed, topk_axis)
        if topk_axis is None and tolerance.min_top1 is not None:  # a TopK's indices are items, not classes
            stats.worst_class = worst_class(ref, kept, tolerance.min_top1)
            # ... and the other way: a class painted over other classes keeps its own elements (review17:
            # class 5 put on 4% of the background, 2.6x its area, passed int8 at 96% of the pixels).
            stats.worst_given_class = worst_class(kept, ref, tolerance.min_top1)
        stats.top1, stats.rows, stats.centered_sqnr_db, stats.discrete = agreement, int(ref.size), math.nan, True
        if topk_axis is None and tolerance.min_top1 is not None and agreement is not None and agreement < tolerance.min_top1:
            stats.atol_for_floor = float(np.quantile(np.abs(ref - got), tolerance.min_top1, method="higher"))
    else:
        if np.isfinite(stats.centered_sqnr_db):
            stats.typical_sqnr_db, stats.atypical_elements = typical_elements_sqnr(reference, target)
        stats.top1, stats.top5 = top_k_agreement(reference, target) if not ranked else (None, None)
        stats.rows = sum(len(r) for r in reference) if stats.top1 is not None else 0
        if stats.top1 is not None and stats.top1 < 1.0:
            stats.near_ties, stats.near_tie_margins, stats.counted_margins = _near_ties(reference, target, tolerance.min_sqnr_db)
    _apply_floors(stats, tolerance)
    return stats


def _apply_part_floors(stats: OutputStats, segments: Segments, reference: Sequence[np.ndarray], target: Sequence[np.ndarray],
                       tol: Tolerance) -> None:
    if not _shape_problem(reference, target):
        elementwise = None if _judges_varying_part(tol) else (tol.atol or 0.0, tol.rtol or 0.0)  # mut20: an atol of 2 px never failed scores
        figures, problems = part_floor_problems(segments, reference, target, tol.min_sqnr_db, stats.sqnr_db, elementwise)
        stats.part_sqnr_db.update(figures)
        stats.problems.extend(problems)


def _accepts_zero(name: str, reference: Sequence[np.ndarray], tolerance: Tolerance) -> bool:
    """Would an all-zero output pass every rule in force, where the reference is not zero? Then the
    comparison cannot fail, and a pass says nothing: --atol 1e308, --rtol 1 (|0 - ref| <= |ref|),
    --min-sqnr 0 (zeros measure 0 dB) or --min-cosine 0 alone, a top-1 floor over fewer rows than
    it lets disagree, or the default atol 1e-4 on an output whose values are all below it. Each is
    legitimate beside another rule (a floor switched off for one output), so none is refused; the
    faces say it where the verdict is shown. Found by comparing zeros under the same rules."""
    if not any(np.any(np.isfinite(r) & (np.asarray(r) != 0)) for r in reference):
        return False  # a zero reference: zeros are the right answer
    if any(floor is not None and floor > 0 for floor in (tolerance.min_cosine, tolerance.min_sqnr_db)):
        return False  # zeros measure cosine 0 and SQNR 0 dB: no need to compare them (fp16, int8 profiles)
    if tolerance.atol is not None and tolerance.rtol is not None and _some_element_beyond(reference, tolerance):
        return False  # the fp32 default on a well-scaled output
    return _compare(name, reference, [np.zeros_like(np.asarray(r)) for r in reference], tolerance).passed


def _some_element_beyond(reference: Sequence[np.ndarray], tol: Tolerance) -> bool:
    """Whether zeros miss the element-wise rule somewhere: |ref| > atol + rtol * |ref|."""
    return any(np.any(np.abs(r[np.isfinite(r)]) > tol.atol + tol.rtol * np.abs(r[np.isfinite(r)])) for r in map(np.asarray, reference))


def accepts_zero_text(names: Sequence[str]) -> str:
    """The warning of _accepts_zero for the outputs `names`, or ''."""
    if not names:
        return ""
    return (f"CANNOT FAIL: the tolerances in force pass an all-zero {', '.join(repr(n) for n in names)}; "
            "tighten them (--atol/--rtol, or a floor: --min-sqnr, --min-cosine)")


def _shape_problem(reference: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> str:
    if len(reference) != len(target):
        return f"{len(target)} results for {len(reference)} reference feeds"
    for index, (r, t) in enumerate(zip(reference, target)):
        if np.shape(r) != np.shape(t):
            return f"feed {index}: target shape {list(np.shape(t))} differs from reference {list(np.shape(r))}"
    return ""


def _is_discrete(arrays: Sequence[np.ndarray]) -> bool:
    """Integer or bool outputs (argmax indices, token ids, counts, masks)."""
    return bool(arrays) and all(np.asarray(a).dtype.kind in "biu" for a in arrays)


def _failed_shapes(name: str, reference: Sequence[np.ndarray], problem: str) -> OutputStats:
    elements = int(sum(np.size(r) for r in reference))
    nan = float("nan")
    return OutputStats(name, elements, nan, nan, nan, nan, nan, 0, 0, problems=[problem])


def _error_stats(name: str, ref: np.ndarray, got: np.ndarray) -> OutputStats:
    finite = np.isfinite(ref) & np.isfinite(got)
    r, g = ref[finite], got[finite]
    diff = np.abs(g - r)  # over the finite pairs only: inf - inf warned on every fp16 overflow
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(r != 0, diff / np.abs(r), np.where(diff == 0, 0.0, np.inf))
    # NaN/Inf in the target where the reference is finite: the error is unbounded, and figures
    # over the finite rest would read as if all were well.
    unbounded = bool(np.any(np.isfinite(ref) & ~np.isfinite(got)))
    # A NaN/Inf of the reference that the target does not give back (a suppressed token's -inf logit
    # come back finite, or moved to another token): the finite figures never see it (hunt18).
    with np.errstate(invalid="ignore"):
        lost = int(np.count_nonzero(~np.isfinite(ref) & ~((ref == got) | (np.isnan(ref) & np.isnan(got)))))
    return OutputStats(
        name=name,
        elements=int(ref.size),
        max_abs=math.inf if unbounded else float(diff.max(initial=0.0)),
        max_rel=math.inf if unbounded else float(rel.max(initial=0.0)),
        mean_abs=math.inf if unbounded else (float(diff.mean()) if diff.size else 0.0),
        cosine=math.nan if unbounded else cosine_similarity(r, g),
        sqnr_db=-math.inf if unbounded else sqnr_db(r, g),
        centered_sqnr_db=-math.inf if unbounded else centered_sqnr_db(r, g),
        ref_nonfinite=int(np.count_nonzero(~np.isfinite(ref))),
        target_nonfinite=int(np.count_nonzero(~np.isfinite(got))),
        nonfinite_lost=lost,
    )


def _apply_elementwise(stats: OutputStats, reference: Sequence[np.ndarray], ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> None:
    if tol.atol is None and tol.rtol is None:
        return
    atol, rtol = tol.atol or 0.0, tol.rtol or 0.0
    # equal_nan: matching non-finite values are not mismatches; a NaN/Inf in the target where the
    # reference is finite always is one.
    with np.errstate(invalid="ignore"):
        close = np.isclose(got, ref, atol=atol, rtol=rtol, equal_nan=True)
    bad = np.flatnonzero(~close)
    stats.mismatches = int(bad.size)
    stats.mismatch_percent = 100.0 * bad.size / max(ref.size, 1)
    stats.first_mismatches = _locate(bad[:MAX_MISMATCHES_SHOWN], reference, ref, got)
    stats.needed_atol, stats.needed_rtol = needed_tolerances(ref, got, atol=atol, rtol=rtol)
    if bad.size:
        stats.problems.append(f"{bad.size} of {ref.size} elements ({stats.mismatch_percent:.3g}%) outside atol={tol.atol} rtol={tol.rtol}")


def needed_tolerances(ref: np.ndarray, got: np.ndarray, *, atol: float, rtol: float) -> tuple[float, float]:
    """The smallest atol that passes with the given rtol, and the smallest rtol with the given atol
    (inf when no rtol can: an element off where the reference is 0)."""
    finite = np.isfinite(ref) & np.isfinite(got)
    if not np.all(finite | (ref == got)):
        return math.inf, math.inf
    diff, mag = np.abs(got[finite] - ref[finite]), np.abs(ref[finite])
    need_atol = float(np.max(diff - rtol * mag, initial=0.0))
    excess = diff - atol
    if np.any((excess > 0) & (mag == 0)):
        return max(need_atol, 0.0), math.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # an atol of 1e308 overflows excess / mag
        need_rtol = float(np.max(np.where(excess > 0, excess / mag, 0.0), initial=0.0))
    return max(need_atol, 0.0), need_rtol


def _locate(flat_indices: np.ndarray, reference: Sequence[np.ndarray], ref: np.ndarray, got: np.ndarray) -> list[Mismatch]:
    offsets = np.cumsum([0] + [np.size(r) for r in reference])
    found = []
    for flat in flat_indices:
        feed = int(np.searchsorted(offsets, flat, side="right") - 1)
        index = np.unravel_index(int(flat - offsets[feed]), np.shape(reference[feed]))
        found.append(Mismatch(feed, tuple(int(i) for i in index), float(ref[flat]), float(got[flat])))
    return found


def _near_ties(reference: Sequence[np.ndarray], target: Sequence[np.ndarray], min_sqnr_db: float | None) -> tuple[int, list[float], list[float]]:
    """(disagreeing rows that are near-ties, the reference's top-1 margin on the first of them and on
    the first counted ones).

    A near-tie: the reference's margin between its top class and the class the target chose is at
    most sqrt(2) x the error per element that the SQNR floor allows on that row (the row's RMS x
    10^(-floor/20); sqrt(2): the flip needs the difference of two elements' errors). Such a flip is
    what any output within the floor's noise does; top-1 agreement counted it all the same, and a
    flattened segmentation map [1, 8192] (its top "class" one of many saturated pixels) or a random
    classifier's near-equal scores failed at 28-31 dB (zoo: F10). No SQNR floor: no near-ties (the
    top-1 floor alone is strict). Why not the target's measured error as the yardstick: it grows with
    the defect it would excuse (a class logit shifted by a bug raises the error that hides its flips).
    """
    widths: dict[int, list] = {}  # feeds of one class count together: a [1, S] output's S may differ between feeds
    for r, t in zip(reference, target):
        widths.setdefault(np.shape(r)[1], []).append((np.asarray(r, np.float64), np.asarray(t, np.float64)))
    found = [_near_ties_among(np.concatenate([r for r, _ in pairs]), np.concatenate([t for _, t in pairs]), min_sqnr_db) for pairs in widths.values()]
    return sum(f[0] for f in found), [m for f in found for m in f[1]][:MAX_MISMATCHES_SHOWN], [m for f in found for m in f[2]][:MAX_MISMATCHES_SHOWN]


def _near_ties_among(ref: np.ndarray, got: np.ndarray, min_sqnr_db: float | None) -> tuple[int, list[float], list[float]]:
    """_near_ties over rows of one class count."""
    rows = np.flatnonzero(ref.argmax(axis=1) != got.argmax(axis=1))
    margins = ref[rows, ref[rows].argmax(axis=1)] - ref[rows, got[rows].argmax(axis=1)]
    near = np.zeros(len(rows), bool)
    if min_sqnr_db is not None:
        # The row's RMS over its typical classes: a -inf class made the allowance inf (top-1 0% passed),
        # a -1e4 one 447 logits (a fault swapping the top two classes on 143 of 256 rows passed) (hunt18).
        finite = np.all(np.isfinite(ref), axis=0)
        columns = np.flatnonzero(finite)[typical_columns(ref[:, finite])]
        allowance = math.sqrt(2.0) * np.sqrt(np.mean(ref[np.ix_(rows, columns)] ** 2, axis=1)) * 10.0 ** (-min_sqnr_db / 20.0)
        near = np.isfinite(margins) & (margins <= allowance)  # NaN margins (a non-finite reference row) count
    return int(near.sum()), [float(m) for m in margins[near][:MAX_MISMATCHES_SHOWN]], [float(m) for m in margins[~near][:MAX_MISMATCHES_SHOWN]]


def _apply_floors(stats: OutputStats, tol: Tolerance) -> None:
    if not stats.elements:  # redteam19: an output sliced to [1, 0] passed every target at 'max abs 0, SQNR inf' over nothing
        stats.problems.append("the output is empty on every feed: nothing to compare (a selection that selects nothing on "
                              "these inputs?); give inputs on which it holds values (--inputs)")
    elif stats.ref_nonfinite == stats.elements:
        # Matching NaN/Inf are no mismatch, but with no finite reference element the figures of
        # an all-NaN output would read "max abs 0, SQNR inf" and claim agreement over nothing.
        stats.problems.append(f"the reference holds no finite value ({stats.elements} elements NaN/Inf): nothing to compare; "
                              "fix the model or its inputs (see reference::run)")
    if stats.target_nonfinite > stats.ref_nonfinite:
        stats.problems.append(f"{stats.target_nonfinite - stats.ref_nonfinite} more NaN/Inf in the target than in the reference")
    if stats.nonfinite_lost:
        stats.problems.append(f"{stats.nonfinite_lost} element(s) where the reference is NaN/Inf differ in the target")
    if tol.min_cosine is not None and not stats.cosine >= tol.min_cosine:
        stats.problems.append(f"cosine {stats.cosine:.6f} below the floor {tol.min_cosine}")
    if tol.min_sqnr_db is not None and not stats.sqnr_db >= tol.min_sqnr_db:
        stats.problems.append(f"SQNR {stats.sqnr_db:.2f} dB below the floor {tol.min_sqnr_db} dB")
    elif _judges_varying_part(tol) and stats.centered_sqnr_db < tol.min_sqnr_db:  # NaN: nothing varies, the plain SQNR judges
        stats.problems.append(f"SQNR of the varying part {stats.centered_sqnr_db:.2f} dB below the floor {tol.min_sqnr_db} dB "
                              f"(plain SQNR {stats.sqnr_db:.2f} dB counts the output's mean as signal)")
    elif _judges_varying_part(tol) and stats.typical_sqnr_db < tol.min_sqnr_db:
        stats.problems.append(f"SQNR of the elements of a typical scale {stats.typical_sqnr_db:.2f} dB below the floor {tol.min_sqnr_db} dB "
                              f"({stats.atypical_elements} element(s) far from the rest left out: over all of them, {stats.sqnr_db:.2f} dB "
                              "measures mostly those)")
    if tol.min_top1 is not None and stats.top1 is not None and _disagreements(stats) > allowed_disagreements(tol.min_top1, stats.rows, alone=stats.discrete):
        stats.problems.append(f"top-1 agreement {stats.top1:.3%} below the floor {tol.min_top1:.3%} ({_disagreement_text(stats)})")
    elif stats.worst_class is not None:
        label, kept, count = stats.worst_class
        stats.problems.append(f"class {label} keeps {kept:.3%} of its {count} elements, below {class_floor(tol.min_top1):.0%} "
                              f"(over all elements {stats.top1:.3%}: the other classes carry it)")
    elif stats.worst_given_class is not None:
        label, right, count = stats.worst_given_class
        stats.problems.append(f"class {label} is given to {count} elements, {right:.3%} of them the reference's class {label}, below "
                              f"{class_floor(tol.min_top1):.0%} (over all elements {stats.top1:.3%}: the other classes carry it)")


def _judges_varying_part(tol: Tolerance) -> bool:
    """Whether the SQNR floor also holds for the varying part: when no element-wise rule is in force
    (the int8 profile), where the floors are the only rules on values and an offset carried a wrong
    rest past them; an element-wise rule already fails that rest. A floor of 0 dB or less accepts
    noise as loud as the signal: mean removal would make it a rule the user did not set."""
    return tol.atol is None and tol.rtol is None and tol.min_sqnr_db is not None and tol.min_sqnr_db > 0


def _disagreement_text(stats: OutputStats) -> str:
    """'3 of 16 rows disagree beyond a near-tie; the reference's top-1 margin there: 2, 1.5, 0.9'
    for class scores; '4 of 20 elements differ' for an integer or bool output (no margins)."""
    count = _disagreements(stats)
    if not stats.counted_margins:
        return f"{count} of {stats.rows} elements differ" + _quantity_hint(stats)
    margins = ", ".join(f"{m:.3g}" for m in stats.counted_margins) + (", ..." if count > len(stats.counted_margins) else "")
    return f"{count} of {stats.rows} rows disagree beyond a near-tie; the reference's top-1 margin there: {margins}{_near_tie_text(stats)}"


def _quantity_hint(stats: OutputStats) -> str:
    """Where an integer output fails its agreement floor by small differences, the per-output atol
    that would count them as agreeing: a uint8 image or pixel coordinates are quantities, not classes
    (review17: an honest int8 at 37 dB read 37.6% agreement, and nothing named the way out)."""
    if not stats.atol_for_floor or not math.isfinite(stats.atol_for_floor):
        return ""
    return (f"; if '{stats.name}' holds quantities (pixels, coordinates, counts) rather than classes, "
            f"--output-tolerance {stats.name}:atol={stats.atol_for_floor:g} counts the elements within it as agreeing")


def _disagreements(stats: OutputStats) -> int:
    """Rows whose top-1 differs, near-ties left out (_near_ties)."""
    return round((1.0 - stats.top1) * stats.rows) - stats.near_ties


def _near_tie_text(stats: OutputStats) -> str:
    return f"; {stats.near_ties} near-tie row(s) not counted" if stats.near_ties else ""


def format_stats(stats: OutputStats, tolerance: Tolerance) -> str:
    """The multi-line failure message of one output: the product's interface when a check fails."""
    lines = [f"output '{stats.name}': " + "; ".join(stats.problems or ["passed"])]
    if not (math.isnan(stats.max_abs) and math.isnan(stats.cosine)) or stats.ref_nonfinite or stats.target_nonfinite:  # none: shapes differ
        lines.append(f"  max abs {stats.max_abs:.4g}, max rel {stats.max_rel:.4g}, mean abs {stats.mean_abs:.4g}, cosine {stats.cosine:.6f}, "
                     f"SQNR {stats.sqnr_db:.2f} dB, NaN/Inf ref {stats.ref_nonfinite} target {stats.target_nonfinite}")
    if stats.top1 is not None:
        lines.append(f"  top-1 agreement {stats.top1:.2%}" + (f", top-5 {stats.top5:.2%}" if stats.top5 is not None else "") + _near_tie_text(stats))
    if stats.mismatches:
        lines.append(f"  {stats.mismatches} of {stats.elements} elements ({stats.mismatch_percent:.3g}%) off; first:")
        lines += [f"    {m}" for m in stats.first_mismatches]
        lines.append(f"  would pass with atol={stats.needed_atol:.3g} (rtol={tolerance.rtol}) or rtol={stats.needed_rtol:.3g} (atol={tolerance.atol})")
    return "\n".join(lines)
