"""Latency and baseline checks for `pytest --model` (the session plugin that writes baselines is baseline_session.py).

Items, per selected target:
  latency::latency[<t>]     (with --latency) warm-up, timed rounds, median/mean/stdev/p90/p99/min
  baseline::accuracy[<t>]   (with a baseline folder) this run's accuracy figures against the baseline
  baseline::latency[<t>]    (with both) this run's raw latency samples against the baseline's

A baseline item never writes: with --baseline-update it puts what it measured in its figures, and
the session plugin merges those into the files at session end, on the xdist controller only (item
figures travel to the controller in `user_properties`), so one run writes each file once.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import weakref
from pathlib import Path

import pytest

from .. import baseline as store
from ..bench import LatencySamples, measure_latency, summarize
from ..compare import compare_output
from ..config import pyproject_section
from ..context import ModelContext, RunOptions
from ..environment import environment_id, environment_key
from ..errors import CheckFailed, CheckSkipped, ConfigError
from ..feed_digest import feeds_sha256
from ..targets import select_targets, timing
from ..trt import flavour
from ..validate import idle_without, not_dash, resolved
from . import task
from .core import Check, _reference_or_fail
from .options import INI_BASELINE_DIR, UPDATE_FLAG, typed, value

SETTINGS_KEY = "baseline_checks"
XDIST_REASON = "latency is not measured under pytest-xdist: workers share the cores; run without -n"
_MS = 1e3


@dataclasses.dataclass(frozen=True)
class Settings:
    """This family's options, resolved once per run (ctx.options.extra["baseline_checks"])."""

    latency: bool = False
    rounds: int = 100
    warmup: int = 10
    rule: store.LatencyRule = store.LatencyRule()
    baseline_dir: Path | None = None
    update: bool = False
    under_xdist: bool = False
    update_command: str = "pytest --model MODEL --baseline-update"


# --------------------------------------------------------------------------------------- options


def read_options(config: pytest.Config) -> dict:
    settings = Settings(
        latency=bool(value(config, "latency")),
        rounds=value(config, "latency_rounds"),
        warmup=value(config, "latency_warmup"),
        rule=store.LatencyRule(max_ratio=_ratio(value(config, "latency_max_ratio"))),
        baseline_dir=_baseline_dir(value(config, "baseline_dir"), config),
        update=bool(value(config, "baseline_update")),
        under_xdist=_under_xdist(config),
        update_command=_update_command(config),
    )
    _validate(settings, config)
    return {SETTINGS_KEY: settings}


def _ratio(value: float) -> float:
    """A NaN or infinite ratio turns the latency gate off without a word: refused."""
    if not (math.isfinite(value) and value >= 1):
        raise ConfigError(f"--latency-max-ratio {value} is not a finite ratio >= 1; pass e.g. 1.05")
    return value


def _baseline_dir(cli: str | None, config: pytest.Config | None) -> Path | None:
    """Command line (relative to the current folder), else ini (relative to the ini file), else
    pyproject.toml (relative to the root folder); None when no baseline folder is in use."""
    if cli:
        return resolved(not_dash(cli, "--baseline-dir"), "--baseline-dir")
    if config is None:
        return None
    if ini := config.getini(INI_BASELINE_DIR):
        base = config.inipath.parent if config.inipath else config.rootpath
        return resolved(base / ini, INI_BASELINE_DIR)
    folder = pyproject_section(config.rootpath).get("baseline_dir")
    if folder is not None and not isinstance(folder, str):
        raise ConfigError(f"baseline_dir = {folder!r} in [tool.onnx2trt_check] is not a path; write baseline_dir = \"baselines\"")
    if folder is not None and not folder.strip():  # as if unset: the baseline gate silently off
        raise ConfigError(f"baseline_dir = {folder!r} in [tool.onnx2trt_check] is empty; write baseline_dir = \"baselines\" or remove the key")
    return resolved(config.rootpath / folder, "baseline_dir") if folder else None


def _under_xdist(config: pytest.Config | None) -> bool:
    return config is not None and (hasattr(config, "workerinput") or bool(config.getoption("numprocesses", default=None)))


def _update_command(config: pytest.Config | None) -> str:
    args = [str(a) for a in (config.invocation_params.args if config else ())]
    return shlex.join(["pytest", *args] + ([] if UPDATE_FLAG in args else [UPDATE_FLAG]))


# The rounds a run with a baseline folder may time: a baseline file stores every sample (19 bytes each,
# 190 KB at this maximum; left16: 500000 rounds wrote 8 MB). Refused above it rather than stored as a
# summary: the gate's Mann-Whitney U test over a summary loses power (1000 quantiles of 20000 samples
# against 20000 current ones fired on 0/20 of a 6% slowdown at log-sd 1.0, the full samples on 15/20;
# tests/test_gate13_latency_samples.py), while up to this many raw samples the gate is what it was.
MAX_BASELINE_ROUNDS = 10_000


def _validate(settings: Settings, config: pytest.Config) -> None:
    if settings.rounds < 1 or settings.warmup < 0:
        raise ConfigError(f"--latency-rounds {settings.rounds} / --latency-warmup {settings.warmup}: pass rounds >= 1 and warmup >= 0")
    if not settings.latency:  # a gate that looked set, and measured nothing
        idle_without(typed(config, ("--latency-rounds", "--latency-warmup", "--latency-max-ratio")), "--latency", "no latency is measured or gated")
    if settings.latency and settings.baseline_dir is not None and settings.rounds < (least := settings.rule.min_samples):  # a gate that always skipped
        raise ConfigError(f"--latency-rounds {settings.rounds} with a baseline folder: the latency gate compares at least {least} samples a side; pass --latency-rounds {least} or more")
    if settings.latency and settings.baseline_dir is not None and settings.rounds > MAX_BASELINE_ROUNDS:  # a file of every sample
        raise ConfigError(f"--latency-rounds {settings.rounds} with a baseline folder: a baseline file stores every sample, and a summary "
                          f"would weaken the latency gate; pass --latency-rounds {MAX_BASELINE_ROUNDS} or fewer (or no baseline folder)")
    if settings.latency and settings.baseline_dir is not None and settings.under_xdist:  # a gate that skipped every latency item, green
        raise ConfigError("--latency with -n (pytest-xdist) and a baseline folder: latency is not measured under xdist (workers share "
                          "the cores), so the latency gate would compare nothing; run the latency gate without -n (or -n 0)")
    if settings.update and settings.baseline_dir is None:
        raise ConfigError(f"{UPDATE_FLAG} needs a baseline folder; pass --baseline-dir DIR or set baseline_dir in [tool.onnx2trt_check]")


def settings_of(options: RunOptions) -> Settings:
    return options.extra.get(SETTINGS_KEY) or Settings()


def checks(options: RunOptions) -> list[Check]:
    """Latency items with --latency; baseline items when a baseline folder is in use."""
    settings, found = settings_of(options), []
    for target in select_targets(options.targets):
        if settings.latency:
            found.append(Check(f"latency[{target.name}]", "latency", latency_check(target, settings)))
        if settings.baseline_dir is not None:
            found.append(Check(f"baseline[{target.name}]", "accuracy", baseline_accuracy_check(target, settings)))
            if settings.latency:
                found.append(Check(f"baseline[{target.name}]", "latency", baseline_latency_check(target, settings)))
    return found


# --------------------------------------------------------------------------------------- latency

# Samples per model context and target: the latency item and the baseline latency item share one
# measurement; keyed weakly so a finished model's samples go with its context.
_SAMPLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def latency_samples(ctx: ModelContext, target, settings: Settings) -> LatencySamples:
    """The target's latency on the first feed, measured once per model and target."""
    per_target = _SAMPLES.setdefault(ctx, {})
    if target.name not in per_target:
        per_target[target.name] = _measure(ctx, target, settings)
    return per_target[target.name]


def _measure(ctx: ModelContext, target, settings: Settings) -> LatencySamples:
    if settings.under_xdist:
        raise CheckSkipped(XDIST_REASON)
    _skip_unavailable(target)
    try:
        call = timing.timed_runner(target, target.artifact(ctx), ctx.feeds[0])
    except timing.TimingNotImplemented as exc:
        raise CheckSkipped(str(exc)) from None
    return measure_latency(call, warmup=settings.warmup, rounds=settings.rounds)


def _skip_unavailable(target) -> None:
    if reason := target.unavailable_reason():
        raise CheckSkipped(f"target {target.name}: {reason}")


def latency_figures(samples: LatencySamples) -> dict:
    """Key statistics in milliseconds plus the raw samples (ms, rounded to 1 ns)."""
    stats = summarize(samples)
    keys = {"median_ms": stats.median, "mean_ms": stats.mean, "stdev_ms": stats.stddev, "p90_ms": stats.p90, "p99_ms": stats.p99, "min_ms": stats.min, "max_ms": stats.max}
    figures = {name: round(value * _MS, 6) for name, value in keys.items()}
    return figures | {"rounds": len(samples), "warmup": samples.warmup, "samples_ms": [round(s * _MS, 6) for s in samples.seconds]}


def latency_check(target, settings: Settings):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        samples = latency_samples(ctx, target, settings)
        return {"engine": target.engine, "feed": 0} | latency_figures(samples)

    return check


# -------------------------------------------------------------------------------------- baseline


def current_accuracy(ctx: ModelContext, target) -> dict[str, dict[str, float]]:
    """output -> metric -> value for the metrics baselines keep, from the core's compare_output."""
    reference = _reference_or_fail(ctx, target)
    outputs = target.run(target.artifact(ctx), target.feeds(ctx))
    current = {}
    for name in reference.names:
        tolerance = ctx.options.tolerances.for_output(name, target.precision)
        figures = compare_output(name, reference.per_output(name), [o[name] for o in outputs], tolerance).figures()
        current[name] = {m: float(figures[m]) for m in store.DEFAULT_ACCURACY_MARGINS if figures.get(m) is not None}
    return current | task.baseline_figures(ctx, outputs)  # task figures (--labels / --metric), if any


@dataclasses.dataclass(frozen=True)
class Located:
    """The file this run's (model, target, machine) maps to, and the baseline compared with."""

    expected: Path
    environment: dict
    compared: Path | None = None
    baseline: store.Baseline | None = None


def locate(ctx: ModelContext, target, settings: Settings) -> Located:
    """The baseline of this machine; else one of another machine (for accuracy), in name order."""
    environment = environment_key()
    expected = store.baseline_path(settings.baseline_dir, model_name=_key(ctx, settings), target=store_target(target), environment=environment)
    prefix = expected.name[: -len(f"{environment_id(environment)}.json")]
    others = sorted(p for p in expected.parent.glob("*.json") if p.name.startswith(prefix) and re.fullmatch(r"[0-9a-f]{12}\.json", p.name[len(prefix) :]))
    compared = expected if expected.exists() else next(iter(others), None)
    if compared is None or settings.update:
        return Located(expected, environment, compared if compared == expected else None)
    return Located(expected, environment, compared, _load(compared, settings))


def store_target(target) -> str:
    """The target's name in the store. A TensorRT target's figures are the flavour's and major's that
    built the engine (trt-fp16+tensorrt-rtx-1, trt-fp16+tensorrt-10): keyed by target name alone, a
    TensorRT-RTX baseline was compared with TensorRT 10 figures as one (the fallback to another
    machine's file matches only the same name, so it never crosses flavours either)."""
    if target.engine != "tensorrt":
        return target.name
    chosen = flavour.select()  # the item skipped already when no flavour is selectable
    return f"{target.name}+{chosen.key}-{chosen.major}"


def _key(ctx: ModelContext, settings: Settings) -> str:
    """The model's name in the store (baseline.model_key): its path relative to the store's folder."""
    return store.model_key(ctx.path, settings.baseline_dir)


def _load(path: Path, settings: Settings) -> store.Baseline:
    try:
        return store.load_baseline(path)
    except ConfigError as exc:
        figures = {"file": str(path), "verdict": "unreadable"}
        raise CheckFailed(f"{exc}\nfix the file by hand, or rewrite it (this run's figures replace it): {settings.update_command}", figures) from None


def quiet_load(path: Path | None) -> store.Baseline | None:
    """The old baseline for reference while updating; an unreadable one is simply replaced."""
    try:
        return store.load_baseline(path) if path is not None else None
    except ConfigError:
        return None


def _missing(located: Located, ctx: ModelContext, target, settings: Settings, what: str) -> CheckFailed:
    message = f"no {what} baseline for {_key(ctx, settings)} on target {target.name} in {settings.baseline_dir} (expected {located.expected.relative_to(settings.baseline_dir).as_posix()}); create it with: {settings.update_command}"
    old = store.baseline_path(settings.baseline_dir, model_name=_key(ctx, settings), target=target.name, environment=located.environment)
    if target.engine == "tensorrt" and old.exists():  # named before store_target: re-recording alone blessed what the engine computes now
        message += f"; or, if {flavour.select().label} recorded {old.relative_to(settings.baseline_dir).as_posix()} (named before baselines carried the TensorRT flavour), rename it to the expected name to keep gating against it"
    return CheckFailed(message, {"file": str(located.expected), "verdict": "missing", "decisions": []})


def data_fingerprint(feeds) -> dict:
    """What the figures were measured on: the feed count and a sha256 over every feed's inputs
    (name, dtype, shape, bytes). Kept in a baseline's build_options as "data"."""
    return {"feeds": len(feeds), "sha256": feeds_sha256(feeds)}


# data_fingerprint per model and feed list: every baseline item of every target asked for it, hashing
# the same feeds (up to 2 GiB) again each time; the list is kept beside its digest so its id stays its own.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(ctx: ModelContext, target) -> dict:
    feeds = target.feeds(ctx)
    known = _FINGERPRINTS.setdefault(ctx, {})
    if id(feeds) not in known:
        known[id(feeds)] = (feeds, data_fingerprint(feeds))
    return known[id(feeds)][1]


def _other_data(located: Located, ctx: ModelContext, target, settings: Settings) -> str | None:
    """Why this run's figures cannot be compared with the baseline's: they were measured on other
    input data (a CI line that lost --inputs, a changed data file or loader). None when the data is
    the same, or the baseline predates the fingerprint."""
    recorded = located.baseline.build_options.get("data")
    if recorded is None or recorded == (now := _fingerprint(ctx, target)):
        return None
    then = f"{recorded.get('feeds')} feed(s), sha256 {str(recorded.get('sha256'))[:12]}" if isinstance(recorded, dict) else repr(recorded)
    return (f"baseline {located.compared} was measured on other input data ({then}; this run: {now['feeds']} feed(s), sha256 {now['sha256'][:12]}), "
            f"so its figures say nothing about this run's: give the data it was recorded on, or record it again: {settings.update_command}")


def _update_payload(ctx: ModelContext, target, located: Located, settings: Settings, **measured) -> dict:
    build = {"engine": target.engine, "precision": target.precision, "description": target.description, "data": _fingerprint(ctx, target)}
    return {"model_name": _key(ctx, settings), "model_sha256": ctx.loaded.sha256, "target": store_target(target), "build_options": build, "environment": located.environment} | measured


def _base_figures(located: Located, ctx: ModelContext) -> dict:
    figures = {"file": str(located.compared or located.expected), "expected_file": str(located.expected)}
    if located.baseline is not None:
        figures |= {"baseline_created": located.baseline.created, "model_changed": located.baseline.model_sha256 != ctx.loaded.sha256,
                    "model_sha256": ctx.loaded.sha256}
    return figures


def baseline_accuracy_check(target, settings: Settings):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        _skip_unavailable(target)
        current, located = current_accuracy(ctx, target), locate(ctx, target, settings)
        if settings.update:
            if problem := store.accuracy_problem(current):
                raise CheckFailed(f"not recorded as the baseline: {problem} (the target's outputs are not finite; see its accuracy item)", {"current": current})
            old = quiet_load(located.compared)
            decisions = store.compare_accuracy(old.accuracy, current, task=_task_margin(ctx)) if old else []
            return _updated(located, ctx, decisions, _update_payload(ctx, target, located, settings, accuracy=current))
        if located.baseline is None or not located.baseline.accuracy:
            raise _missing(located, ctx, target, settings, "accuracy")
        figures = _base_figures(located, ctx) | {"current": current}
        if other := _other_data(located, ctx, target, settings):
            raise CheckFailed(other, figures | {"verdict": "other data"})
        differs = store.environment_difference(located.baseline.environment, located.environment)
        if differs:
            figures["environment_differs"] = differs
        return _judge(store.compare_accuracy(located.baseline.accuracy, current, task=_task_margin(ctx)), figures, located, settings)

    return check


def _task_margin(ctx: ModelContext) -> store.AccuracyMargin:
    return store.task_margin(ctx.options.extra.get(task.DROP_KEY))


def baseline_latency_check(target, settings: Settings):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        samples, located = latency_samples(ctx, target, settings), locate(ctx, target, settings)
        latency = {"data": list(samples.seconds), "warmup": samples.warmup}
        if settings.update:
            old = quiet_load(located.compared)
            decisions = [store.decide_latency(old.latency.seconds, samples.seconds, rule=settings.rule)] if old and old.latency else []
            return _updated(located, ctx, decisions, _update_payload(ctx, target, located, settings, latency=latency))
        if located.baseline is None:
            raise _missing(located, ctx, target, settings, "latency")
        differs = store.environment_difference(located.baseline.environment, located.environment)
        if differs:  # another machine's timings say nothing about this one
            raise CheckSkipped(f"environment differs from {located.compared.name} ({differs}); record this machine's baseline with: {settings.update_command}")
        if located.baseline.latency is None:
            raise _missing(located, ctx, target, settings, "latency")
        if other := _other_data(located, ctx, target, settings):  # review14: batch 1 timed against the data's 64, a 50x "improvement"
            raise CheckFailed(other, _base_figures(located, ctx) | {"verdict": "other data"})
        if (recorded := len(located.baseline.latency.seconds)) < settings.rule.min_samples:  # a skip on every run: a gate never red
            raise CheckFailed(f"latency baseline {located.compared} holds {recorded} sample(s), fewer than the {settings.rule.min_samples} the gate compares; record it again: {settings.update_command}")
        decision = store.decide_latency(located.baseline.latency.seconds, samples.seconds, rule=settings.rule)
        if decision.verdict == "skipped":
            raise CheckSkipped(f"latency not compared: {decision.reason}")
        return _judge([decision], _base_figures(located, ctx) | {"current_median_ms": round(decision.current * _MS, 6)}, located, settings)

    return check


def _updated(located: Located, ctx: ModelContext, decisions: list, payload: dict) -> dict:
    figures = _base_figures(located, ctx) | {"file": str(located.expected), "verdict": "updated", "message": "baseline updated"}
    return figures | {"decisions": [dataclasses.asdict(d) for d in decisions], "update": payload}


def _judge(decisions: list, figures: dict, located: Located, settings: Settings) -> dict:
    """Pass with the decisions in the figures, or fail listing every regressed metric."""
    verdicts = {d.verdict for d in decisions}
    verdict = next((v for v in ("missing", "regression", "improvement", "unchanged") if v in verdicts), "skipped")
    figures |= {"verdict": verdict, "decisions": [dataclasses.asdict(d) for d in decisions]}
    missing = [d for d in decisions if d.verdict == "missing"]
    regressions = [d for d in decisions if d.verdict == "regression"]
    if missing or regressions:
        lines = [f"{len(missing)} figure(s) missing from, {len(regressions)} regression(s) against baseline {located.compared}:"]
        lines += [f"  {decision_row(dataclasses.asdict(d))}" for d in missing + regressions]
        if figures.get("model_changed"):  # the first question of whoever bisects it: the model, or the tools?
            lines.append(f"the model file changed since the baseline was recorded ({located.baseline.created}; sha256 "
                         f"{located.baseline.model_sha256[:12]} then, {figures['model_sha256'][:12]} now)")
        lines.append(f"if the change is intended, update the baseline: {settings.update_command}")
        raise CheckFailed("\n".join(lines), figures)
    if figures.get("model_changed"):
        # A pass compares how each target agrees with this model's own reference: a replaced model
        # (classes swapped, a layer dropped) agrees as well as the old one did and passes unchanged.
        figures["summary"] = (f"the model file changed since this baseline ({located.baseline.created}): the gate compares each target "
                              "with this model's own reference, not with the old model (--labels gates the task)")
    return figures


def decision_row(decision: dict) -> str:
    """'logits.max_abs: baseline 1e-06, current 0.001, ratio 1000x (reason)' for one decision."""
    label = f"{decision['output']}.{decision['metric']}" if decision.get("output") else f"{decision['kind']} {decision['metric']}"
    show = (lambda v: f"{v * _MS:.4g} ms") if decision["kind"] == "latency" else (lambda v: f"{v:.4g}")
    values = [("baseline", decision["baseline"]), ("current", decision["current"])]
    shown = ", ".join(f"{name} {'-' if value is None else show(value)}" for name, value in values)
    ratio = "-" if decision["ratio"] is None else f"{decision['ratio']:.3g}x"
    return f"{label}: {shown}, ratio {ratio} [{decision['verdict']}] ({decision['reason']})"
