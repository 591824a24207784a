"""The state of one `pytest --model` run and the collection nodes it turns into items.

    ModelFile (one per model)  ->  CheckFamily (one per family)  ->  CheckItem (one per check)

A CheckItem runs its check on the model's shared ModelContext and records the check's figures in
`user_properties`, so under pytest-xdist they travel to the controller with the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..context import ModelContext, RunOptions
from ..errors import CheckError, CheckFailed, CheckSkipped
from ..report import PROPERTY_KEY, CheckRecord, ModelInfo
from . import families
from .stash import STATE


class RunState:
    """The run's options, its models, and the records of every item (filled on the controller).

    A plain class, compared by identity: it is registered as a pytest plugin object, which must be
    hashable."""

    def __init__(self, options: RunOptions, model_paths: list[Path]):
        self.options = options
        self.model_paths = model_paths
        self.models: dict[str, ModelInfo] = {}
        self.records: list[CheckRecord] = []
        self.context: ModelContext | None = None  # only the latest: items of one model run together
        self.refused: dict[Path, str] = {}  # models that cannot be checked, in a run over several: why

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Registered as a plugin object, so results of xdist workers arrive here on the controller."""
        if report.when != "call":
            return
        for key, entry in report.user_properties:
            if key == PROPERTY_KEY:
                self.records.append(CheckRecord(outcome=report.outcome, **entry))

    def context_for(self, path: Path) -> ModelContext:
        if self.context is None or self.context.path != path:
            self.context = None  # release the previous model before loading the next
            self.context = ModelContext(path, self.options)
        return self.context


def display(config: pytest.Config, path: Path) -> str:
    """The model's name in ids and reports: relative to the rootdir, else the path as given."""
    try:
        return str(path.relative_to(config.rootpath))
    except ValueError:
        return str(path)


class ModelFile(pytest.File):
    def collect(self):
        state = self.config.stash[STATE]
        if self.path.resolve() in state.refused:
            yield RefusedModel.from_parent(self, name="model", message=state.refused[self.path.resolve()])
            return
        by_family: dict[str, list] = {}
        for order, check in enumerate(families.all_checks(state.options)):
            by_family.setdefault(check.family, []).append((order, check))
        for family, family_checks in by_family.items():
            yield CheckFamily.from_parent(self, name=family, checks=family_checks)


class CheckFamily(pytest.Collector):
    def __init__(self, *, checks, **kwargs):
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self):
        for order, check in self.checks:
            yield CheckItem.from_parent(self, name=check.name, check=check, order=order)


class CheckItem(pytest.Item):
    def __init__(self, *, check, order: int, **kwargs):
        super().__init__(**kwargs)
        self.check = check
        self.order = order

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        figures, outcome_error = {}, None
        try:
            figures = self.check.run(state.context_for(self.path.resolve()))
        except CheckFailed as exc:
            figures, outcome_error = exc.figures, exc
        except CheckSkipped as exc:
            self._record({}, str(exc))
            pytest.skip(str(exc))
        except CheckError as exc:  # e.g. an artifact that cannot be written: the item fails with the line
            figures, outcome_error = {}, CheckFailed(str(exc))
        self._record(figures, str(outcome_error or ""))
        if outcome_error:
            raise outcome_error

    def _record(self, figures: dict, message: str) -> None:
        entry = {"model": display(self.config, self.path.resolve()), "family": self.check.family, "name": self.check.name, "figures": figures, "message": message, "order": self.order}
        self.user_properties.append((PROPERTY_KEY, entry))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        if style is None and self.config.getoption("tbstyle", "auto") == "auto":
            # A crash: the long style prints every argument's repr, and a model proto of 2 GB takes
            # hours to repr. --tb=long still gets it.
            style = "short"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.check.family}::{self.check.name}"


class RefusedModel(pytest.Collector):
    """The `model::load` item of a model that cannot be checked (out of scope, unreadable, shapes
    or data that do not fit) in a run over several models: it fails with the reason and the other
    models run. (A run of one such model is a usage error instead.)"""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def collect(self):
        yield RefusedItem.from_parent(self, name="load", message=self.message)


class RefusedItem(pytest.Item):
    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        entry = {"model": display(self.config, self.path.resolve()), "family": "model", "name": "load", "figures": {}, "message": self.message, "order": -1}
        self.user_properties.append((PROPERTY_KEY, entry))
        raise CheckFailed(self.message)

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, "model::load"
