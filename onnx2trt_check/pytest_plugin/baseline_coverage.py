"""`baseline::coverage` of `pytest --model` with a baseline folder: the run compares every target
this model has baseline files of.

A gate whose command lost an option (--calibration-data dropped from a CI line) selects fewer
targets; the lost target's files were only listed as "unused" and the run stayed green, a gate
that no longer compared them. This item fails for such a model, naming the option that selects
the target. Exempt, since the run did not lose them by accident: targets left out by an explicit
--target (the user's choice, like -k), TensorRT targets on a machine without TensorRT (figures
recorded on another machine), and --baseline-update runs (they record; the gate compares).
"""

from __future__ import annotations

from .. import baseline as store
from ..context import ModelContext, RunOptions
from ..errors import CheckFailed, CheckSkipped
from ..targets import TARGETS, select_targets
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
        lost = {t: files for t, files in found.items() if t.name not in checked and t.engine != "tensorrt"}
        if lost:
            raise CheckFailed("this run checks no target of these baseline files, so the gate compared nothing for them: "
                              + "; ".join(_lost_line(t, files) for t, files in lost.items())
                              + ". Give the option that selects each target, or delete the files of a target you retired",
                              {"lost": {t.name: [str(f) for f in files] for t, files in lost.items()}})
        files = sum(map(len, found.values()))
        return {"files": files, "targets": sorted(t.name for t in found),
                "summary": f"{files} baseline file(s) of {len(found)} target(s), each target checked by this run"}

    return check


def _lost_line(target, files) -> str:
    return f"{target.name} ({target.unavailable_reason() or 'not selected'}): {', '.join(str(f) for f in files)}"
