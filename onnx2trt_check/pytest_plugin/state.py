"""The state of one `pytest --model` run and the collection nodes it turns into items.

    ModelFile (one per model)  ->  CheckFamily (one per family)  ->  CheckItem (one per check)

A CheckItem runs its check on the model's shared ModelContext and records the check's figures in
`user_properties`, so under pytest-xdist they travel to the controller with the report. Every
outcome pytest counts is recorded, so the summary and the JSON report count what pytest counts: a
check that raises anything but CheckFailed/CheckSkipped is an error (not a failed check) with its
exception, as are failures in setup, teardown or collection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..context import ModelContext, RunOptions
from ..errors import CheckError, CheckFailed, CheckSkipped
from ..junit import junit_properties
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
        self.notes: list[str] = []  # facts about the whole run, for the summary and the report
        self.outputs: dict[str, list[str]] = {}  # model -> its output names, for options that name outputs
        self.context: ModelContext | None = None  # only the latest: items of one model run together
        self._context_path: Path | None = None
        self.refused: dict[Path, str] = {}  # models that cannot be checked, in a run over several: why

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Registered as a plugin object, so results of xdist workers arrive here on the controller.
        First of the hooks: the teardown report is rewritten for junitxml before it writes it."""
        for key, entry in report.user_properties:
            if key == PROPERTY_KEY and entry.get("when", "call") == report.when:
                self.records.append(record_of(entry, report.outcome))
        if report.failed and report.when not in ("setup", "call", "teardown"):
            self._record_crash(report)
        if report.when == "teardown":  # the report pytest's junitxml writes an item's properties from
            report.user_properties = junit_view(report.user_properties)

    def _record_crash(self, report: pytest.TestReport) -> None:
        """xdist's report of an item whose worker died (when "???"): no check wrote a record, and
        the summary and JSON counts said 0 failed where pytest said 1."""
        model, _, rest = report.nodeid.partition("::")
        if model in self.models and rest:
            stem, _, name = rest.partition("::")
            name, bracket, parameter = name.partition("[")
            family = f"{stem}[{parameter}" if bracket else stem  # `target::accuracy[ort]` is family target[ort]
            self.records.append(CheckRecord(model, family, name, "failed", {}, _first_lines(report.longreprtext), order=10**6))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A model whose items could not be collected: one error record, as pytest counts one error."""
        model = report.nodeid.split("::")[0]
        if report.failed and model in self.models:
            message = _first_lines(report.longreprtext)
            self.records.append(CheckRecord(model, "collection", report.nodeid, "error", {}, message))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """Record what the check itself could not: an exception that is not a check outcome, and a
        failure or skip in setup or teardown (a user's conftest hook, a plugin)."""
        report = yield
        if isinstance(item, CheckItem) and (report.failed or report.skipped) and not _recorded(report):
            outcome = "error" if report.failed else "skipped"
            report.user_properties.append((PROPERTY_KEY, item.entry({}, _message(report, call), when=report.when, outcome=outcome)))
        return report

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        """A check that crashed counts as an error, like a failure in setup: it says nothing about
        the model. pytest still exits 1."""
        if report.when == "call" and report.failed and any(e.get("outcome") == "error" for e in _entries(report)):
            return "error", "E", "ERROR"
        return None

    def context_for(self, path: Path) -> ModelContext:
        """The context of the model collected at `path` (kept by that path: a symlinked model's
        context holds the file it points to, model.load_model)."""
        if self.context is None or self._context_path != path:
            self.context = None  # release the previous model before loading the next
            self.context, self._context_path = ModelContext(path, self.options), path
        return self.context


def junit_view(properties: list) -> list:
    """An item's properties as --junitxml should write them: the check's figures as flat key figures
    (junit.py) instead of one nested dict. A teardown failure's own record stays as it is: under
    xdist this report still has to reach the controller's records."""
    view = []
    for key, value in properties:
        if key != PROPERTY_KEY:
            view.append((key, value))
        elif value.get("when", "call") == "call":
            view += junit_properties(value)
        elif value.get("when") == "teardown":
            view.append((key, value))
    return view


def record_of(entry: dict, outcome: str) -> CheckRecord:
    fields = ("model", "family", "name", "figures", "message", "order")
    return CheckRecord(outcome=entry.get("outcome", outcome), **{name: entry[name] for name in fields})


def _entries(report) -> list[dict]:
    return [entry for key, entry in report.user_properties if key == PROPERTY_KEY and entry.get("when", "call") == report.when]


def _recorded(report) -> bool:
    return bool(_entries(report))


def _message(report, call) -> str:
    """The exception's type and first lines, or a skip's reason."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if call.excinfo is not None:
        head = "\n".join(str(call.excinfo.value).strip().splitlines()[:3])
        return f"{call.excinfo.typename}: {head}" if head else call.excinfo.typename
    return _first_lines(report.longreprtext)


def _first_lines(text: str, lines: int = 3) -> str:
    """The end of a failure's text, where pytest puts the error line."""
    return "\n".join(text.strip().splitlines()[-lines:]) if text else ""


def display(config: pytest.Config, path: Path) -> str:
    """The model's name in ids and reports: its path relative to the rootdir, else its absolute
    path (never the bare file name: a/model.onnx and b/model.onnx must not share one id)."""
    try:
        return path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return path.as_posix()


class ModelFile(pytest.File):
    """One model. Every node id below it is given explicitly, where pytest would derive them:
    outside the rootdir pytest leaves the file part empty (every model's items then share ids, and
    xdist's loadfile sees one file). An item's id puts its family's parameter last,
    `<model>::target::accuracy[ort]` (see item_nodeid)."""

    @classmethod
    def for_model(cls, parent: pytest.Collector, path: Path) -> ModelFile:
        return cls.from_parent(parent, path=path, nodeid=display(parent.config, path))

    def collect(self):
        state = self.config.stash[STATE]
        if self.path in state.refused:
            yield RefusedModel.from_parent(self, name="model", message=state.refused[self.path], nodeid=f"{self.nodeid}::model")
            return
        by_family: dict[str, list] = {}
        for order, check in enumerate(families.all_checks(state.options)):
            by_family.setdefault(check.family, []).append((order, check))
        for family, family_checks in by_family.items():
            yield CheckFamily.from_parent(self, name=family, checks=family_checks, nodeid=f"{self.nodeid}::{family}")


class CheckFamily(pytest.Collector):
    def __init__(self, *, checks, **kwargs):
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self):
        for order, check in self.checks:
            yield CheckItem.from_parent(self, name=check.name, check=check, order=order, nodeid=item_nodeid(self.parent.nodeid, check))


def item_nodeid(model_nodeid: str, check) -> str:
    """`<model>::target::accuracy[ort]` for family `target[ort]`, check `accuracy`: pytest 9 reads
    everything after an id's first "[" as its parameters, so `<model>::target::accuracy[ort]` came
    back from its FAILED lines, JUnit names and --lf cache as `...::target::accuracy[ort]]`."""
    return f"{model_nodeid}::{check.stem}::{check.name}" + (f"[{check.parameter}]" if check.parameter is not None else "")


class CheckItem(pytest.Item):
    def __init__(self, *, check, order: int, **kwargs):
        super().__init__(**kwargs)
        self.check = check
        self.order = order

    def runtest(self) -> None:
        state = self.config.stash[STATE]
        figures, outcome_error = {}, None
        try:
            figures = self.check.run(state.context_for(self.path))
        except CheckFailed as exc:
            figures, outcome_error = exc.figures, exc
        except CheckSkipped as exc:
            self.user_properties.append((PROPERTY_KEY, self.entry({}, str(exc))))
            pytest.skip(str(exc))
        except CheckError as exc:  # e.g. an artifact that cannot be written: the item fails with the line
            figures, outcome_error = {}, CheckFailed(str(exc))
        self.user_properties.append((PROPERTY_KEY, self.entry(figures, str(outcome_error or ""))))
        if outcome_error:
            raise outcome_error

    def entry(self, figures: dict, message: str, *, when: str = "call", outcome: str | None = None) -> dict:
        """What travels in `user_properties` to the controller's records (report.CheckRecord)."""
        entry = {"model": display(self.config, self.path), "family": self.check.family, "name": self.check.name,
                 "figures": figures, "message": message, "order": self.order, "when": when}
        return entry | ({"outcome": outcome} if outcome else {})

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
        yield RefusedItem.from_parent(self, name="load", message=self.message, nodeid=f"{self.nodeid}::load")


class RefusedItem(pytest.Item):
    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        entry = {"model": display(self.config, self.path), "family": "model", "name": "load", "figures": {}, "message": self.message,
                 "order": -1, "when": "call"}
        self.user_properties.append((PROPERTY_KEY, entry))
        raise CheckFailed(self.message)

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, "model::load"
