"""Task accuracy against ground truth: what deployment decisions are made on (TensorRT's own answer to
"which tolerance for int8?" is "the end-to-end metric").

Two sources of figures, both higher-is-better:
  * labels alone (`--labels FILE.npy`, one class index per feed row): top-1 and top-5 accuracy of the
    first output shaped [rows, classes] (top-5 only with more than 5 classes);
  * a metric function (`--metric FILE.py[:func]`, default `metric`): func(outputs, labels) returns
    named figures ({"map": 0.41, "f1": 0.7}); labels is the --labels array or None. Return an error
    metric negated (-rmse), so that a drop is always reference - value.

`outputs` maps each output name to its values over every feed, in feed order: when every feed gives
the same shape, concatenated along the first (batch) axis (stacked when that shape has rank 0 or 1:
one row per feed); otherwise (detections after NMS, a short last batch) a list of per-feed arrays.

`TaskMetric.evaluate` is the function a caller needs as an objective: quantize and bisect's
sensitivity search can rank candidates by it (outputs of `runtime.run_model` in, figures out).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .data import for_model, is_template
from .errors import ConfigError, InputDataError
from .npz import read_npy
from .user_code import load_function
from .validate import not_empty

DEFAULT_METRIC_FUNCTION = "metric"
# "More than the allowed drop" with a round-off slack: 0.95 - 0.94 is 0.010000000000000009 in floats.
_ROUNDOFF = 1e-9


@dataclasses.dataclass(frozen=True)
class TaskMetric:
    """Ground-truth labels and/or a user metric function; `source` says which, for reports."""

    labels: np.ndarray | None
    function: Callable | None
    source: str

    def evaluate(self, outputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
        """Named figures of the outputs of every feed (one dict per feed, in feed order). Raises
        InputDataError when the outputs and labels do not fit, or the function misbehaves."""
        stacked = stacked_outputs(outputs)
        if self.function is None:
            return classification_figures(stacked, self.labels)
        try:
            figures = self.function(stacked, self.labels)
        except Exception as exc:  # the user's function: its failure is the finding, in one line
            raise InputDataError(f"metric function {self.source} raised {type(exc).__name__}: {exc}") from None
        return checked_figures(figures, self.source)


@dataclasses.dataclass(frozen=True)
class TaskMetricPerModel:
    """--labels written with {model}: each model's own labels file, loaded with that model
    (RunOptions.for_model), scored by the same metric function."""

    labels: str
    function: Callable | None
    metric: str | None

    def for_model(self, model: Path) -> TaskMetric:
        return _task_metric(for_model(self.labels, model), self.function, self.metric)


def load_task_metric(*, labels: str | Path | None = None, metric: str | None = None) -> TaskMetric | TaskMetricPerModel | None:
    """The metric the options describe, or None when neither is given."""
    if labels is None and metric is None:
        return None
    not_empty(labels, "--labels")
    function = load_function(not_empty(metric, "--metric"), default=DEFAULT_METRIC_FUNCTION, option="--metric") if metric is not None else None
    if is_template(labels):
        return TaskMetricPerModel(str(labels), function, metric)
    return _task_metric(labels, function, metric)


def _task_metric(labels, function: Callable | None, metric: str | None) -> TaskMetric:
    array = load_labels(labels) if labels is not None else None
    if function is None and not is_class_indices(array):
        raise ConfigError(f"--labels '{labels}' holds {array.dtype} shaped {list(array.shape)}, not one class index per row; "
                          "pass --metric FILE.py[:func] to score other ground truth")
    source = f"metric function '{metric}'" if function else f"top-1/top-5 against '{Path(labels).name}'"
    return TaskMetric(array, function, source)


def load_labels(path: str | Path) -> np.ndarray:
    """One label per feed row, from a .npy file (no pickles). Every other kind of file (a metric
    script, a model, a CSV, an .npz archive, an empty file) is a ConfigError naming it (npz.read_npy)."""
    hint = "--labels takes a .npy file of one label per feed row, saved with numpy.save(path, labels)"
    try:
        array = read_npy(Path(path), "--labels", hint)
    except InputDataError as exc:
        raise ConfigError(str(exc)) from None
    if array.ndim == 0 or not len(array):
        raise ConfigError(f"--labels '{path}' holds no rows ({array.dtype} shaped {list(array.shape)}); {hint}")
    return array


def is_class_indices(labels: np.ndarray | None) -> bool:
    return labels is not None and labels.ndim == 1 and labels.dtype.kind in "iu"


def check_label_rows(labels: np.ndarray, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Labels must number the feeds or their rows (the first input's leading dims, summed)."""
    first = next(iter(feeds[0]), None) if feeds else None
    rows = sum(int(np.shape(feed[first])[0]) if np.ndim(feed[first]) else 1 for feed in feeds) if first else 0
    if len(labels) not in (len(feeds), rows):
        raise ConfigError(f"--labels holds {len(labels)} labels, the input data {len(feeds)} feed(s) of {rows} row(s) in all; "
                          "give one label per feed row, in feed order")


def stacked_outputs(outputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Each output over every feed (see the module docstring for the layout)."""
    stacked = {}
    for name in (outputs[0] if outputs else {}):
        arrays = [np.asarray(feed[name]) for feed in outputs]
        if len({a.shape for a in arrays}) > 1:
            stacked[name] = arrays
        else:
            stacked[name] = np.stack(arrays) if arrays[0].ndim <= 1 else np.concatenate(arrays)
    return stacked


def classification_figures(outputs: Mapping[str, np.ndarray | list], labels: np.ndarray) -> dict[str, float]:
    """Top-1 (and top-5 with more than 5 classes) accuracy of the first output shaped [rows, classes]."""
    name, scores = _class_scores(outputs, len(labels))
    outside = (labels < 0) | (labels >= scores.shape[1])
    if outside.any():  # never any model's top-1: 100 on a 10-class output read top1 0 for the reference and every target, drop 0
        raise InputDataError(f"--labels holds {int(outside.sum())} of {len(labels)} label(s) outside 0..{scores.shape[1] - 1}, the classes of "
                             f"output '{name}' (e.g. {labels[outside][0]}); no output can get them right: pass 0-based class indices "
                             "of this model, or --metric FILE.py[:func] for another task")
    figures = {"top1": float(np.mean(scores.argmax(axis=1) == labels))}
    if scores.shape[1] > 5:
        best5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        figures["top5"] = float(np.mean(np.any(best5 == labels[:, None], axis=1)))
    return figures


def _class_scores(outputs: Mapping[str, np.ndarray | list], rows: int) -> tuple[str, np.ndarray]:
    found = {name: a for name, a in outputs.items() if isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[1] >= 2 and a.dtype.kind == "f"}
    for name, scores in found.items():
        if len(scores) == rows:
            return name, scores
    shapes = ", ".join(f"'{n}' {list(a.shape)}" for n, a in found.items()) or "none"
    raise InputDataError(f"no output of class scores has one row per label ({rows} labels; [rows, classes] outputs: {shapes}); "
                         "pass --metric FILE.py[:func] for this task")


def checked_figures(figures, source: str) -> dict[str, float]:
    """The function's result as {name: float}; anything else is an error naming the function."""
    if not isinstance(figures, Mapping) or not figures:
        raise InputDataError(f"metric function {source} returned {type(figures).__name__}; return a non-empty dict of name -> number")
    checked = {}
    for name, value in figures.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InputDataError(f"metric function {source} returned {name!r}: {value!r}; return a dict of str -> number")
        if not math.isfinite(float(value)):
            raise InputDataError(f"metric function {source} returned {name} = {value}; a figure must be finite")
        checked[name] = float(value)
    return checked


def metric_drops(reference: Mapping[str, float], figures: Mapping[str, float]) -> dict[str, float]:
    """reference - value per figure both sides have (positive: the candidate is worse)."""
    return {name: reference[name] - value for name, value in figures.items() if name in reference}


def excessive_drops(drops: Mapping[str, float], max_drop: float | None) -> dict[str, float]:
    """The drops beyond `max_drop` (none when no gate is set)."""
    if max_drop is None:
        return {}
    return {name: drop for name, drop in drops.items() if drop > max_drop * (1 + _ROUNDOFF) + _ROUNDOFF * 1e-3}


# A budget of this many times a figure's size (at least 1) is taken as the gate switched off for a
# figure of unknown range: a user metric's figures are unbounded as far as the suite knows (a -rmse).
UNBOUNDED_BUDGET = 1e6


def unfailable_text(reference: Mapping[str, float], max_drop: float | None, *, bounded: bool) -> str:
    """'CANNOT FAIL: ...' for the figures that no candidate can drop beyond `max_drop`, or ''.

    Such a budget is taken, not refused (left16: --max-metric-drop 1e308 passed every task item
    silently): whether a budget can be exceeded depends on the reference's figure, known only once
    the reference has run (0.5 cannot fail a top-1 of 0.4 but gates a top-1 of 0.9), and a loose
    budget is legitimate beside the baseline gate, which keeps its own 0.01 (baseline.task_margin).
    So, like compare.accepts_zero_text, the verdict says it. `bounded`: the figures lie in 0..1
    (top-1/top-5 against labels), so a budget of at least the reference's figure cannot fail; a
    user metric's range is unknown, so there only UNBOUNDED_BUDGET times the figure's size counts."""
    if max_drop is None:
        return ""
    if bounded:
        names = [name for name, value in reference.items() if not excessive_drops({name: value}, max_drop)]
        why = "at least the reference's figure, and a 0..1 accuracy drops no further than to 0"
    else:
        names = [name for name, value in reference.items() if max_drop >= UNBOUNDED_BUDGET * max(1.0, abs(value))]
        why = f"over {UNBOUNDED_BUDGET:g} times the reference's figure (or {UNBOUNDED_BUDGET:g}): no metric a gate is meant for drops that far"
    if not names:
        return ""
    return (f"CANNOT FAIL: --max-metric-drop {max_drop:g} passes any {', '.join(names)} ({why}); "
            "pass the drop you accept, e.g. --max-metric-drop 0.01 (one point of a 0..1 accuracy)")


def figures_text(figures: Mapping[str, float], reference: Mapping[str, float] | None = None) -> str:
    """'top1 0.9833 (reference 0.9917, drop 0.0083), top5 1' for summaries and messages."""
    parts = []
    for name, value in figures.items():
        text = f"{name} {value:.4g}"
        if reference is not None and name in reference:
            text += f" (reference {reference[name]:.4g}, drop {reference[name] - value:.4g})"
        parts.append(text)
    return ", ".join(parts)


def metric_for_feeds(*, labels: str | Path | None, metric: str | None, model: Path | None,
                     feeds: Sequence[Mapping[str, np.ndarray]], count: int | None = None) -> TaskMetric | None:
    """The task metric of a command (quantize, bisect --sensitivity) for its labelled feeds: the
    labels checked against every feed (one per feed or per row), then kept for the first `count`
    feeds (Defaults to all), as the command uses only those. None without labels and metric."""
    found = load_task_metric(labels=labels, metric=metric)
    if isinstance(found, TaskMetricPerModel):
        if model is None:
            raise ConfigError(f"--labels '{labels}' names {{model}}, but the model is not a file; pass the labels file itself")
        found = found.for_model(model)
    if found is None or found.labels is None:
        return found
    check_label_rows(found.labels, feeds)
    return dataclasses.replace(found, labels=first_feeds_labels(found.labels, feeds, len(feeds) if count is None else count))


def first_feeds_labels(labels: np.ndarray, feeds: Sequence[Mapping[str, np.ndarray]], count: int) -> np.ndarray:
    """The labels of the first `count` feeds: labels checked by check_label_rows number the feeds
    or their rows (when both, the feeds hold one row each and either reading gives the same)."""
    if len(labels) == len(feeds):
        return labels[:count]
    first = next(iter(feeds[0]))
    return labels[:sum(int(np.shape(feed[first])[0]) if np.ndim(feed[first]) else 1 for feed in feeds[:count])]


def reference_figures(metric: TaskMetric, outputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """The figures of the float model's outputs, computed before a search so a metric that cannot
    score them stops the command at once; a metric function that fails without labels is told so."""
    try:
        return metric.evaluate(outputs)
    except InputDataError as exc:
        if metric.labels is None and metric.function is not None:
            raise ConfigError(f"{exc}; without --labels it gets labels=None: pass --labels FILE.npy if it needs them") from None
        raise


def task_objective(model_proto, *, labels, metric: str | None, model: Path | None, feeds, count: int | None = None):
    """(TaskMetric, TaskObjective scoring its first figure) for a search on the first `count` of
    `feeds` (Defaults to all), with the float model's figures already computed (a metric that
    cannot score them stops here); (None, None) without labels and metric."""
    from .quant.objective import TaskObjective
    from .runtime import run_model

    found = metric_for_feeds(labels=labels, metric=metric, model=model, feeds=feeds, count=count)
    if found is None:
        return None, None
    figures = reference_figures(found, run_model(model_proto, list(feeds)[:count]))
    return found, TaskObjective(found, next(iter(figures)))
