"""The check families `pytest --model` runs, in order: one explicit registry.

A family module provides two functions, so adding a family never touches the plugin:
  read_options(config)      -> dict of its settings, from the pytest config (command line, ini,
                            rootdir); raise a CheckError subclass for a bad value (a usage error)
  checks(options)           -> list[Check] for one model, given the run's RunOptions
and optionally
  session_plugin(config, options) -> an object with pytest hook methods (terminal summary,
                            session finish, ...) registered for the run, or None
  check_model(ctx)          checks the family's options against one loaded model and its feeds
                            before any item runs; raise a CheckError subclass for a misfit
  check_options(options)    checks the family's settings against the whole run's options (e.g.
                            an option no selected --target uses); raise a CheckError subclass
Its command-line options are declared in options.py (light, imported by every pytest run).
"""

from __future__ import annotations

from ..context import RunOptions
from . import baseline_coverage, baseline_session, baselines, bisect, core, int8, parity, precision, qdq, task, transforms, trt
from .core import Check

FAMILIES = (core, parity, task, transforms, baselines, baseline_session, baseline_coverage, precision, int8, bisect, qdq, trt)


def read_options(config) -> dict[str, object]:
    settings: dict[str, object] = {}
    for family in FAMILIES:
        settings.update(family.read_options(config))
    return settings


def check_options(options: RunOptions) -> None:
    for family in FAMILIES:
        check = getattr(family, "check_options", None)
        if check is not None:
            check(options)


def all_checks(options: RunOptions) -> list[Check]:
    return [check for family in FAMILIES for check in family.checks(options)]


def session_plugins(config, options: RunOptions) -> list[object]:
    """The hook objects the families want registered for this run (see the module docstring)."""
    found = (getattr(family, "session_plugin", None) for family in FAMILIES)
    return [plugin for factory in found if factory is not None if (plugin := factory(config, options)) is not None]


def validate_model(ctx) -> None:
    """Each family's `check_model(ctx)`, for one model before any item runs (see the module docstring)."""
    for family in FAMILIES:
        if (check := getattr(family, "check_model", None)) is not None:
            check(ctx)
