"""The pytest plugin: `pytest --model x.onnx`. Thin: options in, items out, results to the report.

Registered through the `pytest11` entry point, so it is active wherever the package is installed;
without `--model` it only adds its options.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from . import checks as checks_module
from . import families
from .config import (
    ToleranceConfig,
    parse_output_tolerances,
    pyproject_section,
    split_section,
)
from .context import ModelContext, RunOptions
from .data import FeedOptions, parse_range
from .errors import CheckError
from .model import parse_shape
from .report import (
    PROPERTY_KEY,
    CheckRecord,
    ModelInfo,
    check_report_path,
    report_document,
    summary_lines,
    write_report,
)
from .targets import get_target, target_names

STATE = pytest.StashKey["RunState"]()
INI_TOLERANCES = {"atol": "onnx2trt_atol", "rtol": "onnx2trt_rtol", "min_cosine": "onnx2trt_min_cosine", "min_sqnr_db": "onnx2trt_min_sqnr_db"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("onnx2trt_check", "onnx2trt_check: validate ONNX models for deployment")
    group.addoption("--model", action="append", default=[], metavar="PATH", help="ONNX model to check (repeatable); a folder means every .onnx in it")
    group.addoption("--inputs", metavar="NPZ", help="input data: keys are input names; an extra leading axis gives one feed per slice")
    group.addoption("--data-loader", metavar="FILE.py[:FUNC]", help="script whose FUNC (default load_data) yields feed dicts")
    group.addoption("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    group.addoption("--input-range", action="append", default=[], metavar="[NAME:]LOW,HIGH", help="value range of generated inputs. Defaults to 0,1")
    group.addoption("--seed", type=int, default=0, help="seed of generated inputs. Defaults to 0")
    group.addoption("--num-feeds", type=int, default=4, help="number of generated feeds. Defaults to 4")
    group.addoption("--target", action="append", default=[], metavar="NAME", help=f"target to compare with the reference (repeatable): {', '.join(target_names())}. Defaults to every target that can run here")
    group.addoption("--atol", type=float, help="absolute tolerance. Defaults to 1e-4")
    group.addoption("--rtol", type=float, help="relative tolerance. Defaults to 1e-4")
    group.addoption("--min-cosine", type=float, help="floor on cosine similarity per output (off by default)")
    group.addoption("--min-sqnr", type=float, dest="min_sqnr_db", help="floor on SQNR in dB per output (off by default)")
    group.addoption("--output-tolerance", action="append", default=[], metavar="OUT:key=value,...", help="tolerance of one output, e.g. logits:atol=1e-3")
    group.addoption("--report-json", metavar="PATH", help="write the results as a schema-versioned JSON report")
    group.addoption("--artifact-dir", metavar="DIR", help="keep derived models (fp16/int8 artifacts, transformed models) in a new folder under DIR. Defaults to a temporary folder")
    families.add_options(group)
    for key, ini in INI_TOLERANCES.items():
        parser.addini(ini, f"onnx2trt_check: {key} for every output", default=None)
    parser.addini("onnx2trt_output_tolerances", "onnx2trt_check: per-output tolerances, OUT:key=value,...", type="linelist", default=[])


@dataclasses.dataclass
class RunState:
    options: RunOptions
    model_paths: list[Path]
    models: dict[str, ModelInfo] = dataclasses.field(default_factory=dict)
    records: list[CheckRecord] = dataclasses.field(default_factory=list)
    context: ModelContext | None = None  # only the latest: items of one model run together

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


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("model"):
        return
    try:
        state = RunState(_run_options(config), _model_paths(config.getoption("model")))
        if report_path := config.getoption("report_json"):
            check_report_path(Path(report_path))
        for path in state.model_paths:  # validate every model and its input data before any test runs
            context = state.context_for(path)
            state.models[_display(config, path)] = ModelInfo(str(path), context.loaded.sha256, context.notes)
    except CheckError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = state
    config.pluginmanager.register(state, "onnx2trt_check_state")
    for index, family_plugin in enumerate(families.session_plugins(config, state.options)):
        config.pluginmanager.register(family_plugin, f"onnx2trt_check_family_{index}")
    if config.args_source != pytest.Config.ArgsSource.ARGS:  # `pytest --model x.onnx` alone checks only the models
        config.args[:] = [str(p) for p in state.model_paths]


def _model_paths(arguments: list[str]) -> list[Path]:
    paths = []
    for argument in arguments:
        path = Path(argument).resolve()
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if not found:
                raise CheckError(f"folder '{argument}' given to --model holds no .onnx file")
            paths.extend(found)
        else:
            if not path.exists():
                raise CheckError(f"model file '{argument}' does not exist; check the --model path")
            paths.append(path)
    return list(dict.fromkeys(paths))


def _run_options(config: pytest.Config) -> RunOptions:
    feeds = FeedOptions(
        seed=config.getoption("seed"),
        num_feeds=config.getoption("num_feeds"),
        ranges=dict(parse_range(t) for t in config.getoption("input_range")),
        npz=Path(config.getoption("inputs")) if config.getoption("inputs") else None,
        data_loader=config.getoption("data_loader"),
    )
    if feeds.num_feeds < 1:
        raise CheckError(f"--num-feeds {feeds.num_feeds} must be at least 1")
    shapes = dict(parse_shape(t) for t in config.getoption("input_shape"))
    targets = tuple(config.getoption("target")) or None
    for name in targets or ():
        get_target(name)  # an unknown name is a usage error now, not a collection error later
    artifact_dir = Path(config.getoption("artifact_dir")) if config.getoption("artifact_dir") else None
    extra = families.read_options(config)
    return RunOptions(feeds=feeds, input_shapes=shapes, tolerances=_tolerances(config), targets=targets, artifact_dir=artifact_dir, extra=extra)


def _tolerances(config: pytest.Config) -> ToleranceConfig:
    tolerances = ToleranceConfig()
    values, outputs, precisions = split_section(pyproject_section(config.rootpath))
    tolerances.layer(values, outputs, "[tool.onnx2trt_check] of pyproject.toml", precisions)
    ini_values = {key: config.getini(ini) for key, ini in INI_TOLERANCES.items() if config.getini(ini) is not None}
    tolerances.layer(ini_values, parse_output_tolerances(config.getini("onnx2trt_output_tolerances")), "pytest ini")
    cli_values = {key: config.getoption(key) for key in INI_TOLERANCES if config.getoption(key) is not None}
    tolerances.layer(cli_values, parse_output_tolerances(config.getoption("output_tolerance")), "command line")
    return tolerances


def _display(config: pytest.Config, path: Path) -> str:
    try:
        return str(path.relative_to(config.rootpath))
    except ValueError:
        return str(path)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    state = parent.config.stash.get(STATE, None)
    if state is not None and file_path.suffix == ".onnx" and file_path.resolve() in state.model_paths:
        return ModelFile.from_parent(parent, path=file_path)
    return None


class ModelFile(pytest.File):
    def collect(self):
        state = self.config.stash[STATE]
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
        except checks_module.CheckFailed as exc:
            figures, outcome_error = exc.figures, exc
        except checks_module.CheckSkipped as exc:
            self._record({}, str(exc))
            pytest.skip(str(exc))
        self._record(figures, str(outcome_error or ""))
        if outcome_error:
            raise outcome_error

    def _record(self, figures: dict, message: str) -> None:
        entry = {"model": _display(self.config, self.path.resolve()), "family": self.check.family, "name": self.check.name, "figures": figures, "message": message, "order": self.order}
        self.user_properties.append((PROPERTY_KEY, entry))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, checks_module.CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.check.family}::{self.check.name}"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.records:
        return
    terminalreporter.write_sep("=", "onnx2trt_check summary")
    for line in summary_lines(state.records, state.models):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE, None)
    report_path = session.config.getoption("report_json", None)
    if state is None or not report_path or hasattr(session.config, "workerinput"):
        return  # under xdist only the controller writes
    write_report(Path(report_path), report_document(state.records, state.models, int(exitstatus)))
