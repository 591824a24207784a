"""What a search over quantization choices maximizes: a score of a candidate model's outputs against
the float model's outputs on the same feeds (higher is better).

The automatic calibration (quant/auto_range.py) and bisect's fallback search (bisection/sensitivity.py)
both take an `Objective`, so a task metric (top-1 against labels, mAP, ...) can replace the default
without touching either search: any `objective(reference, outputs) -> float` fits.

The default is the worst output's SQNR in dB over all feeds: a relative measure, so one figure
serves outputs of any scale; -inf when the candidate has a NaN/Inf the reference does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from onnx2trt_check.compare import sqnr_db

Outputs = Mapping[str, np.ndarray]
Objective = Callable[[Sequence[Outputs], Sequence[Outputs]], float]


def output_sqnr_db(reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> float:
    """The worst SQNR (dB) over the float outputs, each over all feeds; -inf when `outputs` has a
    NaN/Inf where the reference is finite. Outputs that are not float (indices, masks) are not
    scored; with none scored the result is +inf (nothing to lose). A feed whose output has another
    shape than the reference's (NonMaxSuppression's detections [K], the candidate keeping another
    number) cannot pair its elements: its reference and its output are both all noise, as against
    zeros (numpy's broadcast error crashed the automatic calibration, hunt17)."""
    worst = math.inf
    for name in reference[0]:
        if not np.issubdtype(np.asarray(reference[0][name]).dtype, np.floating):
            continue
        worst = min(worst, _paired_sqnr_db(reference, outputs, name))
    return worst


def _paired_sqnr_db(reference: Sequence[Outputs], outputs: Sequence[Outputs], name: str) -> float:
    """output_sqnr_db of one output; -inf for a NaN/Inf where the reference is finite (or unpaired)."""
    refs, gots = [], []
    for r, o in zip(reference, outputs, strict=True):
        r, o = np.asarray(r[name], np.float64), np.asarray(o[name], np.float64)
        if r.shape != o.shape:  # unpaired: each against zeros
            r, o = np.concatenate([r.ravel(), np.zeros(o.size)]), np.concatenate([np.zeros(r.size), o.ravel()])
        refs.append(r.ravel())
        gots.append(o.ravel())
    ref, got = np.concatenate(refs), np.concatenate(gots)
    if np.any(~np.isfinite(got) & np.isfinite(ref)):
        return -math.inf
    return sqnr_db(ref, got)


# --- the task figure as the objective -----------------------------------------------------------
#
# A coarse figure (top-1 over a few rows) ties often: many candidates classify the same rows right.
# A task score is therefore the figure (a float: floors and reports read it as it is) carrying the
# output SQNR, and searches order scores by `score_key`: the figure first, then for a tie the SQNR,
# so among candidates that score the same rows right the one closer to the float model wins.


class TaskScore(float):
    """A task figure (higher is better) that carries the output SQNR (dB) that breaks its ties."""

    sqnr_db: float

    def __new__(cls, figure: float, sqnr_db: float) -> TaskScore:
        score = super().__new__(cls, figure)
        score.sqnr_db = sqnr_db
        return score


def score_key(score: float) -> tuple[float, float]:
    """How searches order scores: the score, then (a TaskScore) its output SQNR for ties."""
    return float(score), getattr(score, "sqnr_db", 0.0)


def beats(new: float, old: float, *, min_gain_db: float) -> bool:
    """Whether `new` is better than `old` by more than the minimum gain. A plain score (dB) must
    rise by more than `min_gain_db`. A task score in its own units: any rise of the figure counts
    (one more row right in top-1 over N rows is a 1/N rise, whatever N), and an equal figure
    counts when the output SQNR rises by more than `min_gain_db`."""
    if not isinstance(new, TaskScore) or not isinstance(old, TaskScore):
        return new > old + min_gain_db
    return float(new) > float(old) or (float(new) == float(old) and new.sqnr_db > old.sqnr_db + min_gain_db)


class TaskObjective:
    """The objective `metric.evaluate(outputs)[figure]` (task_metrics.TaskMetric; the figure named,
    Defaults to the first figure the metric returns), as a TaskScore with the output SQNR for ties.
    The reference outputs only break ties: the figure is against the metric's ground truth."""

    def __init__(self, metric, figure: str | None = None) -> None:
        self.metric, self.figure = metric, figure

    def figures(self, outputs: Sequence[Outputs]) -> dict[str, float]:
        from onnx2trt_check.errors import ConfigError

        figures = self.metric.evaluate(outputs)
        if self.figure is None:
            self.figure = next(iter(figures))
        if self.figure not in figures:
            raise ConfigError(f"{self.metric.source} gives {', '.join(figures)}, not '{self.figure}'; name one of those")
        return figures

    def __call__(self, reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> TaskScore:
        return TaskScore(self.figures(outputs)[self.figure], output_sqnr_db(reference, outputs))

    def describe(self) -> str:
        return f"{self.figure} of {self.metric.source}, ties broken by output SQNR"
