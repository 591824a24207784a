"""`baseline::coverage` of `pytest --model` with a baseline folder: the run compares every target
this model has baseline files of.

A gate whose command lost an option (--calibration-data dropped from a CI line) selects fewer
targets; the lost target's files were only listed as "unused" and the run stayed green, a gate
that no longer compared them. This item fails for such a model, naming the option that selects
the target. Exempt, since the run did not lose them by accident: targets left out by an explicit
--target (the user's choice, like -k), TensorRT targets that cannot run here (no TensorRT, or no
GPU its engines run on: figures recorded on another machine; the item's summary names them as not
compared, and skips when no other target is left), and --baseline-update runs (they record; the
gate compares). Latency too: a run without --latency fails when this machine's files of the model
hold latency samples (another machine's are never compared: baseline.py).
"""

from __future__ import annotations

from .. import baseline as store
from ..context import ModelContext, RunOptions
from ..environment import environment_id, environment_key
from ..errors import CheckFailed, CheckSkipped, ConfigError
from ..targets import TARGETS, select_targets
from ..targets.ort_int8 import NO_CALIBRATION_REASON, model_has_qdq
from .baselines import Settings, settings_of
from .core import Check


def read_options(config) -> dict:
    return {}  # this family reads the baseline family's settings


def checks(options: RunOptions) -> list[Check]:
    settings = settings_of(options)
    if settings.baseline_dir is None or settings.update or options.targets:
        return []
    return [Check("baseline", "coverage", coverage_check({t.name for t in select_targets(None)}, settings))]


def coverage_check(checked: set[str], settings: Settings):
    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        key = store.model_key(ctx.path, settings.baseline_dir)
        found = {t: files for t in TARGETS if (files := store.model_files(settings.baseline_dir, model_name=key, target=t.name))}
        if not found:
            raise CheckSkipped("no baseline file of this model yet; its baseline items say how to record them")
        unchecked = _unchecked(ctx, checked)
        lost = {t: files for t, files in found.items() if t.name in unchecked and t.engine != "tensorrt"}
        if lost:
            raise CheckFailed("this run checks no target of these baseline files, so the gate compared nothing for them: "
                              + "; ".join(_lost_line(t, unchecked[t.name], files) for t, files in lost.items())
                              + ". Give the option that selects each target, or delete the files of a target you retired",
                              {"lost": {t.name: [str(f) for f in files] for t, files in lost.items()}})
        # TensorRT files this run cannot compare (recorded on a machine whose GPU ran the engines):
        # exempt, but never counted as checked (the summary said "each target checked by this run").
        elsewhere = {t.name: unchecked[t.name] for t in found if t.name in unchecked}
        compared = {t: files for t, files in found.items() if t.name not in elsewhere}
        if not compared:
            raise CheckSkipped(f"no baseline file of this model is for a target this run checks: {_not_compared(elsewhere)}")
        if timed := _latency_not_measured(compared, settings):
            raise CheckFailed("this run measures no latency (no --latency), so the latency samples of this machine's baseline files were not "
                              f"compared: {', '.join(map(str, timed))}. Pass --latency, or delete their latency blocks if this machine no longer gates latency",
                              {"latency_not_compared": [str(f) for f in timed]})
        files = sum(map(len, compared.values()))
        summary = f"{files} baseline file(s) of {len(compared)} target(s), each target checked by this run"
        figures = {"files": files, "targets": sorted(t.name for t in compared)}
        if elsewhere:
            figures["not_compared"] = elsewhere
            summary += f"; not compared here: {_not_compared(elsewhere)}"
        return figures | {"summary": summary}

    return check


def _unchecked(ctx: ModelContext, checked: set[str]) -> dict[str, str]:
    """The targets this run does not check for this model, with why. ort-int8 is selected for the
    whole run when any model holds Q/DQ nodes, yet without calibration data it skips a float model:
    its ort-int8 files were not compared (a folder run with one QDQ model passed coverage)."""
    unchecked = {t.name: t.unavailable_reason() or "not selected" for t in TARGETS if t.name not in checked}
    if "ort-int8" in checked and ctx.options.extra.get("calibration_data") is None and not model_has_qdq(ctx):
        unchecked["ort-int8"] = NO_CALIBRATION_REASON
    return unchecked


def _latency_not_measured(compared: dict, settings: Settings) -> list:
    """This machine's files (latency is compared on the machine that recorded it) that hold latency
    samples, in a run without --latency: a CI line that lost the flag stayed green."""
    if settings.latency:
        return []
    here = f".{environment_id(environment_key())}.json"
    return [path for files in compared.values() for path in files if path.name.endswith(here) and _holds_latency(path)]


def _holds_latency(path) -> bool:
    try:
        return store.load_baseline(path).latency is not None
    except ConfigError:  # the file's baseline items report it
        return False


def _not_compared(elsewhere: dict[str, str]) -> str:
    return "; ".join(f"{name} ({reason})" for name, reason in sorted(elsewhere.items()))


def _lost_line(target, reason: str, files) -> str:
    return f"{target.name} ({reason}): {', '.join(str(f) for f in files)}"
