"""The baseline store and the regression decisions.

One JSON file per (model, target, environment): `<model key>.<target>.<env-id>.json` in the store
folder, where the model key is the model's path relative to the folder that holds the store
(`model_key`), its folders mirrored as sub-folders, so two models of one file name never share a
file (models/a/model.onnx -> <store>/models/a/model.ort.<env-id>.json). Written atomically with sorted keys and indent 2 so a baseline update reviews as a small
diff. The latency block has the shape of a pytest-benchmark `stats` block (its fields plus p90/p99,
`data` = raw samples in seconds rounded to ns, `iterations` = 1); on load only `data` is read back,
the statistics are recomputed from it. Accuracy and latency decisions are pure functions returning
a `Decision` value; nothing here raises for a regression.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .baseline_schema import REQUIRED_FIELDS as _REQUIRED_FIELDS  # noqa: F401  (tests name the fields)
from .baseline_schema import SCHEMA_VERSION, accuracy_problem, schema_problem
from .bench import LatencySamples, summarize
from .environment import environment_id
from .errors import ConfigError
from .fileio import atomic_write_text

UPDATE_HINT = "run with --baseline-update to rewrite it"
_NS_DIGITS = 9  # samples are stored rounded to 1 ns
_ROUNDOFF = 1e-9  # relative slack on accuracy margins (see _beyond)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class Baseline:
    """What one baseline file records. `accuracy` maps output name -> metric -> value."""

    model_name: str
    model_sha256: str
    target: str
    build_options: dict
    environment: dict
    tool_versions: dict
    accuracy: dict
    latency: LatencySamples | None = None
    created: str = dataclasses.field(default_factory=_utc_now)


# ----------------------------------------------------------------------------------------- store


def model_key(model_path: str | os.PathLike, store_dir: str | os.PathLike) -> str:
    """The model's name in the store: its path relative to the store's parent folder (typically the
    project root, so the key is the same on every machine and from every working folder), "/"
    separated, e.g. "models/a/model.onnx"; ".." where the model lies outside that folder."""
    model, base = os.path.abspath(model_path), os.path.dirname(os.path.abspath(store_dir))
    try:
        return Path(os.path.relpath(model, base)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return "@abs/" + Path(model).as_posix().replace(":", "")


def baseline_path(store_dir: str | os.PathLike, *, model_name: str, target: str, environment: dict) -> Path:
    """Where the baseline of (model, target, environment) lives. `model_name` is the model's key
    (`model_key`); its folders become sub-folders of the store, each name made file-safe
    injectively, so distinct keys never map to one file and none leaves the store."""
    folder, stem = _model_place(store_dir, model_name)
    return folder / f"{stem}.{_file_safe(target)}.{environment_id(environment)}.json"


def model_files(store_dir: str | os.PathLike, *, model_name: str, target: str) -> list[Path]:
    """Every machine's baseline files of (model, target), sorted; a TensorRT target's files carry
    its flavour after a "+" (trt-fp16+tensorrt-10). Matched by the whole name, so model "a" never
    claims the files of model "a.ort" or target "ort" those of "ort-fp16"."""
    folder, stem = _model_place(store_dir, model_name)
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(f"{stem}.{_file_safe(target)}") + r"(\+[A-Za-z0-9_.-]+)?\.[0-9a-f]{12}\.json")
    return sorted(path for path in folder.iterdir() if pattern.fullmatch(path.name))


def _model_place(store_dir: str | os.PathLike, model_name: str) -> tuple[Path, str]:
    """The store folder of `model_name` and its file stem (empty for a model named ".onnx")."""
    *folders, name = (part for part in Path(model_name).as_posix().split("/") if part)
    # "model.onnx" -> "model"; another name keeps its suffix and gets a bare "%" (which escaping never
    # makes), so "model" and "model.onnx" stay apart.
    stem = _file_safe(name[: -len(".onnx")]) if name.endswith(".onnx") else _file_safe(name) + "%"
    return Path(store_dir, *map(_file_safe, folders)), stem


def path_of(store_dir: str | os.PathLike, baseline: Baseline) -> Path:
    return baseline_path(store_dir, model_name=baseline.model_name, target=baseline.target, environment=baseline.environment)


def _file_safe(name: str) -> str:
    """Characters outside [A-Za-z0-9_.+-] (and "%") as %XX of their UTF-8 bytes; "." and ".."
    escaped whole: injective, and never a path step."""
    if name in (".", ".."):
        return name.replace(".", "%2E")
    return re.sub(r"[^A-Za-z0-9_.+-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)


def write_baseline(store_dir: str | os.PathLike, baseline: Baseline, *, update: bool = False) -> Path:
    """Write the baseline file atomically and return its path. An existing file (even a corrupt
    one) is only replaced when `update=True`. Defaults to False."""
    path = path_of(store_dir, baseline)
    if path.exists() and not update:
        raise ConfigError(f"baseline {path} exists and update=False; {UPDATE_HINT}")
    if problem := accuracy_problem(baseline.accuracy):
        raise ConfigError(f"baseline {path} not written: {problem}")  # it could not be read back
    text = dumps_baseline(baseline)
    atomic_write_text(path, text)  # temp file beside it + os.replace: never half a file
    return path


def dumps_baseline(baseline: Baseline) -> str:
    """The file text: sorted keys, indent 2, samples rounded to ns. Same content -> same bytes.
    A non-finite figure (sqnr_db of identical outputs is inf) is written as JSON5-style
    `Infinity`/`NaN`, which Python's json reads back as the same float."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": baseline.model_name, "sha256": baseline.model_sha256},
        "target": {"name": baseline.target, "build_options": baseline.build_options},
        "tool_versions": baseline.tool_versions,
        "environment": baseline.environment,
        "accuracy": baseline.accuracy,
        "latency": None if baseline.latency is None else _latency_block(baseline.latency),
        "created": baseline.created,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _latency_block(samples: LatencySamples) -> dict:
    data = [round(s, _NS_DIGITS) for s in samples.seconds]
    stats = summarize(data).as_dict() if data else {}  # the figures are for readers; load ignores them
    stats = {k: round(v, _NS_DIGITS) if isinstance(v, float) else v for k, v in stats.items()}
    return {**stats, "data": data, "iterations": 1, "warmup": samples.warmup}


def load_baseline(path: str | os.PathLike) -> Baseline:
    """Read and validate one baseline file; any problem is a ConfigError naming the file and fix."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"baseline {path} is not readable JSON ({exc}); {UPDATE_HINT}") from None
    problem = schema_problem(document)
    if problem:
        raise ConfigError(f"baseline {path}: {problem}; {UPDATE_HINT}")
    return _from_document(document)


def _from_document(document: dict) -> Baseline:
    latency = document["latency"]
    return Baseline(
        model_name=document["model"]["name"],
        model_sha256=document["model"]["sha256"],
        target=document["target"]["name"],
        build_options=document["target"]["build_options"],
        environment=document["environment"],
        tool_versions=document["tool_versions"],
        accuracy=document["accuracy"],
        latency=None if latency is None else LatencySamples(tuple(latency["data"]), warmup=latency["warmup"]),
        created=document["created"],
    )


def find_unused(store_dir: str | os.PathLike, used_files: Iterable[str | os.PathLike]) -> list[Path]:
    """Baseline files in `store_dir` that no test used, sorted (candidates for deletion)."""
    # realpath: Path.resolve raised on a symlink loop in the folder, a traceback in place of the summary (redteam19)
    used = {os.path.realpath(p) for p in used_files}
    return sorted(p for p in Path(store_dir).rglob("*.json") if os.path.realpath(p) not in used)


# ------------------------------------------------------------------------------------- decisions


@dataclasses.dataclass(frozen=True)
class Decision:
    """One comparison against the baseline. `ratio` is current / baseline (None where undefined),
    `delta` is current - baseline. `verdict`: regression | improvement | unchanged | skipped."""

    kind: str
    metric: str
    baseline: float | None
    current: float | None
    ratio: float | None
    delta: float | None
    verdict: str  # or `missing`: a figure one side has and the other has not (or a NaN baseline)
    reason: str
    output: str | None = None


@dataclasses.dataclass(frozen=True)
class AccuracyMargin:
    """How far a metric may move before it counts. Higher-is-better metrics use `absolute` (in the
    metric's unit). Error metrics (lower is better) need BOTH a relative rise above `relative`
    and an absolute rise above `absolute`: the absolute floor keeps float noise at 1e-9 -> 2e-9
    (a 100% rise, but meaningless) from being a regression."""

    higher_is_better: bool
    absolute: float
    relative: float | None = None


# sqnr_db in dB; cosine absolute; top1 is the fraction of samples whose top-1 class agrees (0..1),
# so 0.01 is one percentage point. Baselines are compared across machines (a CI runner with other
# CPU kernels than the machine that wrote them), so the floors sit above what float32 rounding moves
# between kernels: 1e-5 for max_abs, 1e-6 for mean_abs (an fp32 target's own tolerance is 1e-4 and
# catches real damage there), and SQNR above SQNR_CEILING_DB counts as SQNR_CEILING_DB. max_rel is
# kept in the figures but not gated: near-zero reference values make it swing by orders of
# magnitude between kernels.
SQNR_CEILING_DB = 80.0  # a relative RMS error of 1e-4: beyond it, float32 rounding
DEFAULT_ACCURACY_MARGINS: Mapping[str, AccuracyMargin] = {
    "sqnr_db": AccuracyMargin(higher_is_better=True, absolute=1.0),
    "cosine": AccuracyMargin(higher_is_better=True, absolute=1e-4),
    "top1": AccuracyMargin(higher_is_better=True, absolute=0.01),
    "max_abs": AccuracyMargin(higher_is_better=False, absolute=1e-5, relative=0.20),
    "mean_abs": AccuracyMargin(higher_is_better=False, absolute=1e-6, relative=0.20),
}


# Task figures (task_metrics: top-1/top-5 against labels, a user metric) are stored under this key
# in a baseline's accuracy block, beside the outputs (an ONNX name is never in angle brackets). They
# are higher-is-better and move by TASK_MARGIN (in the figure's unit: one point of a 0..1 accuracy),
# or by the run's --max-metric-drop where it is smaller (task_margin): a -rmse of 0.004 that grew to
# 0.009 moved less than 0.01 and passed (gate13). Never by a larger one: that option is the budget
# against the float reference, and a gate of --max-metric-drop 0.05 passed a top-1 4 points below
# its baseline (review14).
TASK_KEY = "<task>"
TASK_MARGIN = AccuracyMargin(higher_is_better=True, absolute=0.01)


def task_margin(max_metric_drop: float | None) -> AccuracyMargin:
    """The margin of the task figures: --max-metric-drop where given and smaller (in the figure's own unit), else TASK_MARGIN."""
    if max_metric_drop is None or max_metric_drop >= TASK_MARGIN.absolute:
        return TASK_MARGIN
    return AccuracyMargin(higher_is_better=True, absolute=max_metric_drop)


def decide_accuracy(
    metric: str,
    baseline: float,
    current: float,
    *,
    output: str | None = None,
    margins: Mapping[str, AccuracyMargin] = DEFAULT_ACCURACY_MARGINS,
) -> Decision:
    """Compare one accuracy figure with its baseline. Defaults to `DEFAULT_ACCURACY_MARGINS`."""
    decision = functools.partial(_decision, "accuracy", metric, baseline, current, output=output)
    margin = margins.get(metric)
    if margin is None:
        return decision("skipped", f"no margin defined for metric {metric!r}")
    if metric == "sqnr_db":  # rounding-level SQNR (150 dB here, 120 dB there) is one figure: exact
        if baseline >= SQNR_CEILING_DB and current >= SQNR_CEILING_DB and baseline != current:  # not "identical to the baseline" (NaN: below)
            return decision("unchanged", f"sqnr_db at or above {SQNR_CEILING_DB:g} dB on both sides (float rounding): counted as one figure")
        baseline, current = min(baseline, SQNR_CEILING_DB), min(current, SQNR_CEILING_DB)
    special = _nonfinite_verdict(baseline, current)
    if special:
        return decision(*special)
    worse = baseline - current if margin.higher_is_better else current - baseline
    if _beyond(worse, baseline, current, margin):
        return decision("regression", f"{metric} worse by {abs(worse):.4g} (margin {_margin_text(margin)})")
    if _beyond(-worse, current, baseline, margin):
        return decision("improvement", f"{metric} better by {abs(worse):.4g} (margin {_margin_text(margin)})")
    return decision("unchanged", f"{metric} within margin {_margin_text(margin)}")


def _beyond(worse: float, better_value: float, worse_value: float, margin: AccuracyMargin) -> bool:
    """Is the move from `better_value` to `worse_value` (by `worse`, in the metric's worse
    direction) beyond the margin? For error metrics also `worse_value > better_value * (1 + rel)`."""
    # "More than the margin" with a round-off slack: 0.95 - 0.94 is 0.010000000000000009 in floats,
    # and a top-1 drop of exactly one point must not count.
    if not worse > margin.absolute * (1.0 + _ROUNDOFF):
        return False
    if margin.relative is None:
        return True
    return worse_value > better_value * (1.0 + margin.relative) * (1.0 + _ROUNDOFF)


def _nonfinite_verdict(baseline: float, current: float) -> tuple[str, str] | None:
    # NaN never compares; an equal pair (inf == inf) is unchanged before any subtraction.
    if math.isnan(baseline):  # never a measurement (load_baseline refuses it): nothing to compare with
        return "missing", "the baseline value is NaN, not a figure; re-record the baseline"
    if math.isnan(current):
        return "regression", "current value is NaN"
    if baseline == current:
        return "unchanged", "identical to the baseline"
    return None


def _margin_text(margin: AccuracyMargin) -> str:
    if margin.relative is None:
        return f"{margin.absolute:g}"
    return f"{margin.relative:.0%} and {margin.absolute:g}"


def _decision(kind, metric, baseline, current, verdict, reason, *, output=None) -> Decision:
    return Decision(
        kind, metric, baseline, current, _ratio(baseline, current), _delta(baseline, current), verdict, reason, output
    )


def _ratio(baseline: float | None, current: float | None) -> float | None:
    if baseline is None or current is None or baseline == 0 or math.isinf(baseline):
        return None
    return current / baseline


def _delta(baseline: float | None, current: float | None) -> float | None:
    return None if baseline is None or current is None else current - baseline


def compare_accuracy(
    baseline: Mapping[str, Mapping[str, float]],
    current: Mapping[str, Mapping[str, float]],
    *,
    margins: Mapping[str, AccuracyMargin] = DEFAULT_ACCURACY_MARGINS,
    task: AccuracyMargin = TASK_MARGIN,
) -> list[Decision]:
    """One decision per (output, metric) in either side; a side missing it gives `missing` (an
    empty or partial baseline must not pass as "nothing regressed"). Task figures move by `task`."""
    decisions = []
    for output in sorted(set(baseline) | set(current)):
        old, new = baseline.get(output, {}), current.get(output, {})
        for metric in sorted(set(old) | set(new)):
            if metric in old and metric in new:
                chosen = {metric: task} if output == TASK_KEY else margins
                decisions.append(decide_accuracy(metric, old[metric], new[metric], output=output, margins=chosen))
            else:
                side = "the baseline" if metric not in old else "the current run"
                reason = f"{output}.{metric} is not in {side}"
                decisions.append(
                    _decision("accuracy", metric, old.get(metric), new.get(metric), "missing", reason, output=output)
                )
    return decisions


@dataclasses.dataclass(frozen=True)
class LatencyRule:
    """A latency regression needs BOTH a one-sided Mann-Whitney U p-value below `alpha` AND a
    median ratio above `max_ratio`; each side needs `min_samples`. Improvement is the mirror
    (p of 'less' below alpha and ratio below 1/max_ratio). Defaults: 0.01, 1.05, 20."""

    alpha: float = 0.01
    max_ratio: float = 1.05
    min_samples: int = 20

    def __post_init__(self):
        # A NaN ratio or alpha compares False with everything: the gate would never fire.
        if not (math.isfinite(self.max_ratio) and self.max_ratio >= 1.0):
            raise ConfigError(f"latency max_ratio {self.max_ratio!r} must be a finite number >= 1, e.g. 1.05")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"latency alpha {self.alpha!r} must be strictly between 0 and 1, e.g. 0.01")
        if self.min_samples < 1:
            raise ConfigError(f"latency min_samples {self.min_samples!r} must be at least 1")


def decide_latency(baseline: Sequence[float], current: Sequence[float], *, rule: LatencyRule = LatencyRule()) -> Decision:
    """Compare two sets of raw latency samples (seconds). Defaults to `LatencyRule()`."""
    old_median = statistics.median(baseline) if baseline else None
    new_median = statistics.median(current) if current else None
    decision = functools.partial(_decision, "latency", "median", old_median, new_median)
    if min(len(baseline), len(current)) < rule.min_samples:
        return decision("skipped", f"{len(baseline)} baseline and {len(current)} current samples; need {rule.min_samples} each")
    ratio = new_median / old_median if old_median else math.inf
    from scipy.stats import mannwhitneyu  # here: scipy.stats costs 0.4 s to import, and most runs never decide latency

    p_slower = mannwhitneyu(current, baseline, alternative="greater").pvalue
    p_faster = mannwhitneyu(current, baseline, alternative="less").pvalue
    figures = f"median {ratio:.3f}x baseline, Mann-Whitney U p(slower)={p_slower:.2g} p(faster)={p_faster:.2g}"
    if p_slower < rule.alpha and ratio > rule.max_ratio:
        return decision("regression", f"{figures}: slower beyond {rule.max_ratio}x at alpha {rule.alpha}")
    if p_faster < rule.alpha and ratio < 1.0 / rule.max_ratio:
        return decision("improvement", f"{figures}: faster beyond 1/{rule.max_ratio}x at alpha {rule.alpha}")
    return decision("unchanged", f"{figures}: not both significant and beyond {rule.max_ratio}x")


def environment_difference(baseline_env: Mapping, current_env: Mapping) -> str | None:
    """'key: old != new; ...' for every key that differs, or None when the environments match."""
    keys = sorted(set(baseline_env) | set(current_env))
    diffs = [f"{k}: {baseline_env.get(k)!r} != {current_env.get(k)!r}" for k in keys if baseline_env.get(k) != current_env.get(k)]
    return "; ".join(diffs) or None


def compare_to_baseline(
    baseline: Baseline,
    *,
    accuracy: Mapping[str, Mapping[str, float]],
    latency: LatencySamples | None,
    environment: Mapping,
    margins: Mapping[str, AccuracyMargin] = DEFAULT_ACCURACY_MARGINS,
    rule: LatencyRule = LatencyRule(),
) -> list[Decision]:
    """Every accuracy decision, then the latency decision. Latency is skipped (accuracy is not)
    when the environment differs or either side has no samples."""
    decisions = compare_accuracy(baseline.accuracy, accuracy, margins=margins)
    skip = functools.partial(_decision, "latency", "median", None, None, "skipped")
    differs = environment_difference(baseline.environment, environment)
    if differs:
        decisions.append(skip(f"environment differs: {differs}"))
    elif baseline.latency is None or latency is None:
        side = "the baseline" if baseline.latency is None else "the current run"
        decisions.append(skip(f"no latency samples in {side}"))
    else:
        decisions.append(decide_latency(baseline.latency.seconds, latency.seconds, rule=rule))
    return decisions
