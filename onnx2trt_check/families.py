"""The check families `pytest --model` runs, in order: one explicit registry.

A family module provides three functions, so adding a family never touches the plugin:
  add_options(group)        its pytest command-line options
  read_options(config)      -> dict of its settings, from the pytest config (command line, ini,
                            rootdir); raise a CheckError subclass for a bad value (a usage error)
  checks(options)           -> list[Check] for one model, given the run's RunOptions
and optionally
  session_plugin(config, options) -> an object with pytest hook methods (terminal summary,
                            session finish, ...) registered for the run, or None
"""

from __future__ import annotations

from . import (
    baseline_checks,
    bisect_checks,
    precision_checks,
    qdq_checks,
    quant_checks,
    transform_checks,
)
from . import checks as core
from .checks import Check
from .context import RunOptions

FAMILIES = (core, transform_checks, baseline_checks, precision_checks, quant_checks, bisect_checks, qdq_checks)


def add_options(group) -> None:
    for family in FAMILIES:
        family.add_options(group)


def read_options(config) -> dict[str, object]:
    settings: dict[str, object] = {}
    for family in FAMILIES:
        settings.update(family.read_options(config))
    return settings


def all_checks(options: RunOptions) -> list[Check]:
    return [check for family in FAMILIES for check in family.checks(options)]


def session_plugins(config, options: RunOptions) -> list[object]:
    """The hook objects the families want registered for this run (see the module docstring)."""
    found = (getattr(family, "session_plugin", None) for family in FAMILIES)
    return [plugin for factory in found if factory is not None if (plugin := factory(config, options)) is not None]
