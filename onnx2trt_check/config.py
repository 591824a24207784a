"""Tolerances from every place a user may set them, merged in one order.

Later sources win: the precision profile of the target (PRECISION_PROFILES), then
`[tool.onnx2trt_check]` of the project's pyproject.toml, then the pytest ini (`onnx2trt_atol = ...`),
then the command line. Per-precision tables (`[tool.onnx2trt_check.precision.int8]`) apply on top of
the global values, and per-output settings (`[tool.onnx2trt_check.outputs.NAME]`, ini
`onnx2trt_output_tolerances`, `--output-tolerance NAME:atol=1e-3,min_sqnr_db=30`) on top of all.

`layered_tolerances` is that order, once: `pytest --model` gives it pytest's own reading of its ini,
and the commands and the API (`quantize`'s int8 floor) give it `read_ini_tolerances`, the same keys
read from the pytest configuration file of the project folder (the current folder), found as pytest
finds it there: so a project that loosened or tightened a floor gets the same verdict from both.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import iniconfig

from .errors import ConfigError
from .tolerance import PRECISION_PROFILES, Tolerance

TOLERANCE_KEYS = tuple(f.name for f in dataclasses.fields(Tolerance))
# The pytest ini keys (pytest_plugin/options.py declares the same; tests/test_config.py holds them equal).
INI_TOLERANCES = {"atol": "onnx2trt_atol", "rtol": "onnx2trt_rtol", "min_cosine": "onnx2trt_min_cosine", "min_sqnr_db": "onnx2trt_min_sqnr_db"}
INI_OUTPUT_TOLERANCES = "onnx2trt_output_tolerances"
PYPROJECT_SOURCE = "[tool.onnx2trt_check] of pyproject.toml"




@dataclasses.dataclass
class ToleranceConfig:
    """The user's settings, kept apart from the profiles so each precision gets its own defaults:
    for_output = profile(precision) <- global <- precision table <- per output."""

    global_values: dict[str, float] = dataclasses.field(default_factory=dict)
    per_precision: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    per_output: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def for_output(self, name: str, precision: str = "fp32") -> Tolerance:
        values = {**self.global_values, **self.per_precision.get(precision, {}), **self.per_output.get(name, {})}
        return dataclasses.replace(PRECISION_PROFILES[precision], **values)

    def layer(self, values: Mapping[str, float], outputs: Mapping[str, Mapping[str, float]], source: str, precisions: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Apply one source's global, per-precision and per-output values over what is there."""
        self.global_values.update(_checked(values, source))
        for precision, precision_values in (precisions or {}).items():
            if precision not in PRECISION_PROFILES:
                raise ConfigError(f"{source}: unknown precision '{precision}'; valid: {', '.join(PRECISION_PROFILES)}")
            self.per_precision.setdefault(precision, {}).update(_checked(precision_values, f"{source} (precision {precision})"))
        for name, output_values in outputs.items():
            self.per_output.setdefault(name, {}).update(_checked(output_values, f"{source} (output '{name}')"))


def _checked(values: Mapping[str, object], source: str) -> dict[str, float]:
    checked = {}
    for key, value in values.items():
        if key not in TOLERANCE_KEYS:
            raise ConfigError(f"{source}: unknown tolerance '{key}'; valid keys: {', '.join(TOLERANCE_KEYS)}")
        checked[key] = _number(value, f"{source}: {key}")
    return checked


def _number(value: object, label: str) -> float:
    if isinstance(value, bool):  # TOML's true/false: float() takes them as 1 and 0
        raise ConfigError(f"{label} = {value!r} is not a number; write e.g. 1e-4")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} = {value!r} is not a number; write e.g. 1e-4") from None
    if not math.isfinite(number) or number < 0 and not label.endswith("min_sqnr_db"):
        raise ConfigError(f"{label} = {value!r} must be a finite{'' if label.endswith('min_sqnr_db') else ', non-negative'} number")
    if label.endswith(("min_cosine", "min_top1")) and number > 1:
        raise ConfigError(f"{label} = {value!r} is above 1, which no output reaches; pass a value in [0, 1]")
    return number


def pyproject_section(rootdir: Path) -> dict:
    """`[tool.onnx2trt_check]` of rootdir/pyproject.toml, or {} when there is none."""
    path = rootdir / "pyproject.toml"
    if not path.is_file():
        return {}
    tool = _toml(path).get("tool", {})
    section = tool.get("onnx2trt_check", {}) if isinstance(tool, Mapping) else {}
    if not isinstance(section, Mapping):  # `onnx2trt_check = 3` under [tool] was an INTERNALERROR (AttributeError)
        raise ConfigError(f"{PYPROJECT_SOURCE} is {section!r}, not a table; write [tool.onnx2trt_check] and its keys below it")
    return section


def split_section(section: Mapping[str, object]) -> tuple[dict[str, object], dict[str, dict], dict[str, dict]]:
    """Separate the tolerance keys of a config table from its `outputs` and `precision` sub-tables."""
    tables = {}
    for key, example in (("outputs", "outputs.logits"), ("precision", "precision.int8")):
        table = section.get(key, {})
        if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) for v in table.values()):
            raise ConfigError(f"[tool.onnx2trt_check.{key}] must hold one table per name, e.g. [tool.onnx2trt_check.{example}]")
        tables[key] = {name: dict(v) for name, v in table.items()}
    known = (*TOLERANCE_KEYS, "outputs", "precision", "baseline_dir")
    if unknown := sorted(set(section) - set(known)):  # a typo (atoll = 0) would leave the defaults in force, silently
        raise ConfigError(f"{PYPROJECT_SOURCE}: unknown key '{unknown[0]}'; valid keys: {', '.join(known)}")
    values = {k: v for k, v in section.items() if k in TOLERANCE_KEYS}
    return values, tables["outputs"], tables["precision"]


def parse_output_tolerance(text: str) -> tuple[str, dict[str, float]]:
    """'logits:atol=1e-3,min_sqnr_db=30' -> ('logits', {'atol': 0.001, 'min_sqnr_db': 30.0})."""
    name, sep, body = text.rpartition(":")
    pairs = [p.partition("=") for p in body.split(",") if p.strip()]
    if not sep or not name or not pairs or any(not eq for _, eq, _ in pairs):
        raise ConfigError(f"output tolerance '{text}' is malformed; write OUTPUT:key=value[,key=value], e.g. logits:atol=1e-3")
    values = {k.strip(): v.strip() for k, _, v in pairs}
    if len(values) < len({(k.strip(), v.strip()) for k, _, v in pairs}):  # logits:atol=1,atol=1e-6 kept the last
        raise ConfigError(f"output tolerance '{text}' sets a key twice; give each key once")
    return name, _checked(values, f"output tolerance '{text}'")


def parse_output_tolerances(lines: Iterable[str]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for line in lines:
        name, values = parse_output_tolerance(line)
        for key, number in values.items():  # lines merge (logits:atol=.. and logits:min_sqnr_db=..); a key set twice kept the last
            if merged.get(name, {}).get(key, number) != number:
                raise ConfigError(f"output tolerance '{line}' sets {key} of '{name}' again ({merged[name][key]:g} before); give it once")
        merged.setdefault(name, {}).update(values)
    return merged


def check_output_names(lines: Sequence[str], outputs: set[str]) -> None:
    """An --output-tolerance on a command for an output the model does not have is a typo or the
    wrong model: a usage error (pytest, over a folder of models, notes it in the summary instead)."""
    if unknown := sorted(set(parse_output_tolerances(lines)) - outputs):
        raise ConfigError(f"--output-tolerance names {', '.join(map(repr, unknown))}, which the model does not have; outputs: {', '.join(sorted(outputs))}")


# ---------------------------------------------------------------- one order for every face

Layer = tuple[Mapping[str, object], Sequence[str]]  # (tolerance key -> value, OUTPUT:key=value lines)


def layered_tolerances(folder: Path, *, ini: Layer = ({}, ()), command_line: Layer = ({}, ())) -> ToleranceConfig:
    """The profiles, then `[tool.onnx2trt_check]` of folder/pyproject.toml, then the pytest ini's
    values, then the command line's: what every face applies."""
    tolerances = ToleranceConfig()
    values, outputs, precisions = split_section(pyproject_section(folder))
    tolerances.layer(values, outputs, PYPROJECT_SOURCE, precisions)
    for (given, lines), source in ((ini, "pytest ini"), (command_line, "command line")):
        tolerances.layer({k: v for k, v in given.items() if v is not None}, parse_output_tolerances(lines), source)
    return tolerances


def project_tolerances(folder: Path | None = None, *, command_line: Mapping[str, float | None] | None = None,
                       output_tolerances: Sequence[str] = ()) -> ToleranceConfig:
    """layered_tolerances for a command or the API run in `folder` (Defaults to the current
    folder): the project is found as pytest finds its rootdir from there (project_root), and its
    pytest ini read by read_ini_tolerances: the tolerances `pytest --model` run there applies."""
    root, table = project_root(Path.cwd() if folder is None else Path(folder))
    return layered_tolerances(root, ini=_ini_layer(table), command_line=(dict(command_line or {}), list(output_tolerances)))


# pytest's configuration files in the order it tries them, each with the table that makes it pytest's.
_INI_FILES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def project_root(start: Path) -> tuple[Path, Mapping[str, object]]:
    """(rootdir, pytest's ini table) as pytest finds them from `start` (its locate_config): the
    nearest folder, `start` or a parent, whose file of _INI_FILES (in that order) is pytest's
    configuration; else the nearest one with a pyproject.toml; else `start`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        for name in _INI_FILES:
            table = _pytest_table(folder / name) if (folder / name).is_file() else None
            if table is not None:
                return folder, table
    return next((f for f in (start, *start.parents) if (f / "pyproject.toml").is_file()), start), {}


def read_ini_tolerances(folder: Path) -> Layer:
    """The onnx2trt_* tolerance keys of the pytest configuration in `folder` or above (project_root):
    pytest.toml, .pytest.toml, pytest.ini, .pytest.ini (always pytest's, even without a table),
    pyproject.toml ([tool.pytest] or [tool.pytest.ini_options]), tox.ini ([pytest]), setup.cfg
    ([tool:pytest]), parsed as pytest parses them (iniconfig, tomllib)."""
    return _ini_layer(project_root(folder)[1])


def _ini_layer(table: Mapping[str, object]) -> Layer:
    values = {key: table.get(ini) for key, ini in INI_TOLERANCES.items()}
    lines = table.get(INI_OUTPUT_TOLERANCES) or ()
    return values, lines.splitlines() if isinstance(lines, str) else list(lines)


def _pytest_table(path: Path) -> Mapping[str, object] | None:
    if path.suffix == ".toml":
        document = _toml(path)
        if path.name != "pyproject.toml":
            return document.get("pytest", {})
        tool = document.get("tool", {}).get("pytest")
        return None if tool is None else tool.get("ini_options", tool)
    try:
        parsed = iniconfig.IniConfig(str(path))
    except iniconfig.ParseError as exc:
        raise ConfigError(f"'{path}' is not a valid ini file ({exc}); fix the file") from None
    section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if section in parsed:
        return dict(parsed[section].items())
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def _toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"'{path}' is not valid TOML ({exc}); fix the file") from None
