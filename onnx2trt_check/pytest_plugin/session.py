"""What `pytest --model` does once the model is known: options read and validated, every model and
its input data loaded before the first item runs, the run's hooks registered.

Imported by plugin.py only when `--model` is given, so the imports of the library are paid by runs
that check a model and by no other pytest run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest

from .. import validate
from ..config import ToleranceConfig, layered_tolerances, parse_output_tolerances
from ..context import RunOptions
from ..data import FeedOptions, for_model, is_template, parse_range, source_file
from ..errors import CheckError, ConfigError
from ..fileio import checked_output
from ..model import parse_shape
from ..report import ModelInfo, check_report_path, report_document, summary_lines, write_report
from ..targets import get_target
from . import families, fast_exit
from .deselected import Deselected
from .options import INI_TOLERANCES, renamed_flags, value
from .selection import Selection
from .stash import STATE
from .state import ModelFile, RunState, display
from .workspace import RunFolder, check_basetemp, make_run_folder, redirect_basetemp, redirect_benchmark_storage, redirect_pytest_cache


def start_run(config: pytest.Config) -> None:
    run_folder = _start_workspace(config)
    try:
        paths = _model_paths(value(config, "model"))
        state = RunState(_run_options(config, run_folder, several=len(paths) > 1), paths)
        check_output_paths(config, state.options)
        check_junitxml(config, paths)
        check_basetemp(config, run_folder, _kept_files(config, paths))
        load_models(config, state)
        state.notes += unsearched_subfolders(value(config, "model"))
        state.notes += [f"{theirs} is this project's own option (its conftest.py); onnx2trt_check's is {ours} here"
                        for theirs, ours in renamed_flags(config).items()]
        state.notes += _unmatched_output_tolerances(config, state.options.tolerances, {n for names in state.outputs.values() for n in names})
    except CheckError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = state
    config.pluginmanager.register(state, "onnx2trt_check_state")
    config.pluginmanager.register(Deselected(set(state.models)), "onnx2trt_check_deselected")
    config.pluginmanager.register(RunHooks(), "onnx2trt_check_run")
    config.pluginmanager.register(FinishHeld(), "onnx2trt_check_finish_held")
    for index, family_plugin in enumerate(families.session_plugins(config, state.options)):
        config.pluginmanager.register(family_plugin, f"onnx2trt_check_family_{index}")
    _collect_models(config, state)


def _collect_models(config: pytest.Config, state: RunState) -> None:
    """`pytest --model x.onnx` alone collects only the models; arguments that select a model's
    items by id are resolved by selection.py (pytest 9 cannot find ids with brackets inside)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(p) for p in state.model_paths]
        return
    config.args[:], selection = Selection.split(config.args, state.model_paths, config.invocation_params.dir)
    config.pluginmanager.register(selection, "onnx2trt_check_selection")


def _start_workspace(config: pytest.Config) -> Path:
    """The run's temporary folder (removed at unconfigure, even when configure fails), and pytest's
    cache, pytest-benchmark's storage and pytest's base temporary folder kept out of the user's
    folders and of the system temporary folder (workspace.py)."""
    folder = RunFolder(make_run_folder(config))
    config.pluginmanager.register(folder, "onnx2trt_check_run_folder")
    fast_exit.register(config)
    redirect_pytest_cache(config)
    redirect_benchmark_storage(config, folder.path)
    redirect_basetemp(config, folder.path)
    return folder.path


def load_models(config: pytest.Config, state: RunState) -> None:
    """Load every model and make its feeds before any test runs. A problem with the only model of
    the run is a usage error; in a run over several models it becomes that model's one failed item
    (state.refused) and the others run."""
    inputs: set[str] = set()
    for path in state.model_paths:
        try:
            context = state.context_for(path)
            families.validate_model(context)
        except CheckError as exc:
            if len(state.model_paths) == 1:
                raise
            state.refused[path] = str(exc)
            state.models[display(config, path)] = ModelInfo(str(path), "", [f"not checked: {exc}"])
            inputs |= _input_names(path)
            continue
        inputs |= {spec.name for spec in context.specs}
        state.models[display(config, path)] = ModelInfo(str(path), context.loaded.sha256, context.notes)
        state.outputs[display(config, path)] = [output.name for output in context.loaded.proto.graph.output]
    _check_names_used(state.options, inputs)


def _input_names(path: Path) -> set[str]:
    """The input names of a model that could not be checked, when its graph can be read at all."""
    from ..model import graph_inputs
    from ..protos import read_onnx

    try:
        return {value.name for value in graph_inputs(read_onnx(path))}
    except Exception:  # unreadable: it names no input
        return set()


def _check_names_used(options: RunOptions, inputs: set[str]) -> None:
    """In a run over several models an input name no model has is a typo, not a scoped option."""
    names = [("--input-shape", n) for n in options.input_shapes] + [("--input-range", n) for n in options.feeds.ranges if n != "*"]
    for option, name in names:
        if name not in inputs:
            raise CheckError(f"{option} names '{name}', which is an input of none of the models (inputs: {', '.join(sorted(inputs)) or 'none'})")


def check_output_paths(config: pytest.Config, options: RunOptions) -> None:
    """Every place the run writes, checked before the first item: a report that cannot be written
    would otherwise be found only after the whole run."""
    if report_path := value(config, "report_json"):
        validate.output_file(report_path, "--report-json", force=True)  # first: a device is never read
        check_report_path(Path(report_path))
    if options.artifact_dir is not None:
        validate.output_folder(value(config, "artifact_dir") or options.artifact_dir, "--artifact-dir")  # the text: '-' is told apart
    for option, folder in (("--bisect-plot", value(config, "bisect_plot")), ("--engine-cache", value(config, "engine_cache"))):
        if folder:
            validate.output_folder(folder, option)
    _check_baseline_dir(options)


# The run's input files besides the models (option dest -> flag): pytest's --junitxml must not replace them.
INPUT_FILE_OPTIONS = {"inputs": "--inputs", "calibration_data": "--calibration-data", "fp16_calibration_data": "--fp16-calibration-data",
                      "labels": "--labels", "reference_model": "--reference-model",
                      # the user's scripts (FILE.py[:FUNC]): --junitxml replaced a data loader with its XML, exit 0 (redteam19)
                      "data_loader": "--data-loader", "metric": "--metric", "reference_script": "--reference-script"}


def _kept_files(config: pytest.Config, models: list[Path]) -> list[tuple[str, object]]:
    """What the run reads or keeps, (what, path): the models, the input files and the outputs' places."""
    files = [("the model", model) for model in models]
    for dest, flag in (*INPUT_FILE_OPTIONS.items(), ("report_json", "--report-json"), ("artifact_dir", "--artifact-dir"),
                       ("baseline_dir", "--baseline-dir"), ("engine_cache", "--engine-cache"), ("bisect_plot", "--bisect-plot")):
        given = value(config, dest, None)
        for path in ({for_model(given, model) for model in models} if is_template(given) else {given} if given else set()):
            files.append((f"the {flag} path", source_file(path)))
    return files


def check_junitxml(config: pytest.Config, models: list[Path]) -> None:
    """pytest's --junitxml replaces its file at the end of the run without asking: never with one
    of the run's models, their weights (fileio.checked_output) or their input data."""
    xml = getattr(config.option, "xmlpath", None)
    if not xml:
        return
    for model in models:
        checked_output(model, xml, force=True, option="--junitxml")
    for dest, flag in INPUT_FILE_OPTIONS.items():
        given = value(config, dest, None)
        files = {for_model(given, model) for model in models} if given and is_template(given) else {given} if given else set()
        if validate.resolved(xml, "--junitxml") in {validate.resolved(f(path), flag) for path in files for f in (str, source_file)}:
            raise ConfigError(f"--junitxml '{xml}' is the {flag} file; write the JUnit XML to another path")
    report = value(config, "report_json")
    if report and validate.resolved(report, "--report-json") == validate.resolved(xml, "--junitxml"):
        raise ConfigError(f"--junitxml '{xml}' is also the --report-json path; give each its own path")


def _check_baseline_dir(options: RunOptions) -> None:
    settings = options.extra.get("baseline_checks")
    folder = getattr(settings, "baseline_dir", None)
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--baseline-dir '{folder}' is a file; pass the folder that holds (or will hold) the baselines")
    if settings.update:
        validate.output_folder(folder, "--baseline-dir")


def _model_paths(arguments: list[str]) -> list[Path]:
    paths = []
    for argument in arguments:
        path = Path(os.path.abspath(argument))  # symlinks kept: a linked model is checked under its own name
        if path.is_dir():
            paths.extend(_models_in_folder(path, argument))
        else:
            if not path.exists():
                pattern = " (a pattern is not expanded here: leave it unquoted for the shell, or pass the folder)" if set("*?[") & set(argument) else ""
                raise CheckError(f"model file '{argument}' does not exist{pattern}; check the --model path")
            paths.append(path)
    for path in paths:
        if "[" in str(path) or "::" in str(path):  # pytest's own line was "path cannot contain [] parametrization: ..."
            raise CheckError(f"model '{path}': pytest reads '[' and '::' in a path it collects as part of an item id, so it cannot "
                             f"check a model there; rename it, or link it under another name (ln -s '{path}' model.onnx)")
    return list(dict.fromkeys(paths))


def _models_in_folder(folder: Path, argument: str) -> list[Path]:
    """Every `.onnx` file directly in the folder, in any letter case. A dangling link is a usage error
    here: pytest would end the whole run on it with an unclear "not found"."""
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".onnx" and not p.is_dir())
    if not found:
        raise CheckError(f"folder '{argument}' given to --model holds no .onnx file")
    for path in found:
        if not path.exists():
            raise CheckError(f"'{path}' in the --model folder is a symbolic link to '{os.readlink(path)}', which does not "
                             "exist; restore its target or remove the link")
    return found


def unsearched_subfolders(arguments: list[str]) -> list[str]:
    """A note per --model folder whose subfolders hold .onnx files: a folder's models are the files
    directly in it (a project folder may hold a virtual environment full of ONNX's test models), so
    the others are named rather than left out without a word."""
    notes = []
    for argument in arguments:
        if Path(argument).is_dir():
            nested = _nested_models(Path(argument))
            if nested:
                notes.append(f"--model {argument}: .onnx files in its subfolders are not checked (e.g. {nested[0]}); "
                             "a folder's models are the files directly in it: give a subfolder with its own --model")
    return notes


def _nested_models(folder: Path, *, limit: int = 3, max_folders: int = 500, max_depth: int = 3) -> list[Path]:
    """Up to `limit` .onnx files in the folder's subfolders, hidden folders and installed packages
    left out; at most `max_folders` folders, `max_depth` deep, read (a dataset folder beside the
    models may hold millions of files: a note is not worth a long walk)."""
    found, visited = [], 0
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = [] if depth >= max_depth else [d for d in dirs if not d.startswith(".") and d not in ("site-packages", "node_modules", "__pycache__")]
        if depth:
            found += [Path(root, f).relative_to(folder) for f in files if f.lower().endswith(".onnx")]
        visited += 1
        if len(found) >= limit or visited >= max_folders:
            break
    return found[:limit]


def _run_options(config: pytest.Config, run_folder: Path, *, several: bool) -> RunOptions:
    feeds = FeedOptions(
        seed=validate.seed(value(config, "seed")),
        num_feeds=validate.integer(value(config, "num_feeds"), "--num-feeds", low=1),
        ranges=validate.once_per_name(value(config, "input_range"), parse_range, "--input-range"),
        npz=Path(value(config, "inputs")) if value(config, "inputs") else None,
        data_loader=value(config, "data_loader"),
    )
    if not feeds.templated:  # once per run: the loader is the user's code ({model}: once per model)
        feeds = dataclasses.replace(feeds, raw=feeds.read())
    shapes = validate.once_per_name(value(config, "input_shape"), parse_shape, "--input-shape")
    targets = tuple(value(config, "target")) or None
    for name in targets or ():
        get_target(name)  # an unknown name is a usage error now, not a collection error later
    artifact_dir = Path(value(config, "artifact_dir")) if value(config, "artifact_dir") else run_folder
    extra = families.read_options(config)
    options = RunOptions(feeds=feeds, input_shapes=shapes, tolerances=_tolerances(config), targets=targets, artifact_dir=artifact_dir,
                         extra=extra, per_model_names=several)
    families.check_options(options)
    return options


def _unmatched_output_tolerances(config: pytest.Config, tolerances: ToleranceConfig, outputs: set[str]) -> list[str]:
    """A per-output tolerance for an output no model of the run has does nothing: on the command
    line it is a usage error (a typo, or the wrong model); in pyproject.toml or the ini, which serve
    every run of a project, a note in the summary."""
    given = parse_output_tolerances(value(config, "output_tolerance"))
    if unknown := sorted(set(given) - outputs):
        raise ConfigError(f"--output-tolerance names {', '.join(map(repr, unknown))}, which no model of this run has; outputs: {', '.join(sorted(outputs))}")
    unmatched = sorted(set(tolerances.per_output) - outputs)
    return [f"tolerance set for output {name!r} (pyproject.toml or ini), which no model of this run has" for name in unmatched]


def _tolerances(config: pytest.Config) -> ToleranceConfig:
    """config.layered_tolerances with pytest's own reading of its ini (the commands read the same
    keys with config.read_ini_tolerances)."""
    ini = ({key: config.getini(ini) for key, ini in INI_TOLERANCES.items()}, config.getini("onnx2trt_output_tolerances"))
    cli = ({key: value(config, key) for key in INI_TOLERANCES}, value(config, "output_tolerance"))
    return layered_tolerances(config.rootpath, ini=ini, command_line=cli)


class RunHooks:
    """The run's collection, summary and report hooks, registered only for a run with `--model`."""

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):
        state = parent.config.stash[STATE]
        if Path(os.path.abspath(file_path)) in state.model_paths:  # any name: `--model m.pb` is checked too
            return ModelFile.for_model(parent, file_path)
        return None

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        state = config.stash[STATE]
        if not state.records:
            return
        terminalreporter.write_sep("=", "onnx2trt_check summary")
        for line in [f"note: {note}" for note in _run_notes(config, state)] + summary_lines(state.records, state.models):
            terminalreporter.write_line(line)


def _write_json_report(session: pytest.Session) -> None:
    """`--report-json`, written last (FinishHeld), with the exit status the process returns: written
    in sessionfinish, it said 0 for a run a failed baseline write or a signal in the summary then
    turned into 1 or 2."""
    state = session.config.stash[STATE]
    report_path = value(session.config, "report_json", None)
    if not report_path or hasattr(session.config, "workerinput"):
        return  # under xdist only the controller writes
    try:
        write_report(Path(report_path), report_document(state.records, state.models, int(session.exitstatus), notes=_run_notes(session.config, state)))
    except CheckError as exc:  # checked before the run; the disk filled up or the folder went away since
        session.config.get_terminal_writer().line(f"ERROR: --report-json: {exc}", red=True)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


class FinishHeld:
    """The end of the run (the summaries, the JSON report) is written whole: a Ctrl-C or SIGTERM
    there raised KeyboardInterrupt out of the terminal summary, a traceback in place of the rest of
    it (pytest catches none at that stage). It is held until the end (a second one acts at once),
    then the run exits 2, interrupted, saying so."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: around the terminal reporter's summary
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int):
        from ..leftovers import signals_held

        with signals_held() as caught:
            result = yield
            if caught:
                name = "SIGTERM" if caught[0] == signal.SIGTERM else "Ctrl-C (SIGINT)"
                session.config.get_terminal_writer().line(f"onnx2trt_check: {name} during the summary: it was completed first; the run is "
                                                          "reported interrupted (exit 2)", red=True)
                session.exitstatus = pytest.ExitCode.INTERRUPTED
            _write_json_report(session)  # last: with the exit status the run returns
        return result


def _targets_not_run(options: RunOptions) -> list[str]:
    """One note per reason the default target selection left targets out (no GPU, no calibration
    data). Asked at the end: the int8 family tells ort-int8 whether it runs after the models load."""
    from ..targets import left_out_by_default

    return [f"targets not run, so not checked: {', '.join(names)} ({reason})" for reason, names in left_out_by_default(options.targets).items()]


def _run_notes(config: pytest.Config, state: RunState) -> list[str]:
    """The run's notes, with the targets the default selection left out and the items -k/-m/--deselect
    left out (deselected.py)."""
    return state.notes + _targets_not_run(state.options) + config.pluginmanager.get_plugin("onnx2trt_check_deselected").notes({r.model for r in state.records})
