"""Tolerances from every place a user may set them, merged in one order.

Later sources win: built-in defaults (compare.Tolerance), then `[tool.onnx2trt_check]` of the
project's pyproject.toml, then the pytest ini (`onnx2trt_atol = ...`), then the command line. Per
output settings (`[tool.onnx2trt_check.outputs.NAME]`, ini `onnx2trt_output_tolerances`,
`--output-tolerance NAME:atol=1e-3,min_sqnr_db=30`) apply on top of the merged global values.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from .compare import Tolerance
from .errors import ConfigError

TOLERANCE_KEYS = tuple(f.name for f in dataclasses.fields(Tolerance))


@dataclasses.dataclass
class ToleranceConfig:
    default: Tolerance = dataclasses.field(default_factory=Tolerance)
    per_output: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def for_output(self, name: str) -> Tolerance:
        return dataclasses.replace(self.default, **self.per_output.get(name, {}))

    def layer(self, values: Mapping[str, float], outputs: Mapping[str, Mapping[str, float]], source: str) -> None:
        """Apply one source's global and per-output values over what is there."""
        self.default = dataclasses.replace(self.default, **_checked(values, source))
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
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} = {value!r} is not a number; write e.g. 1e-4") from None
    if number != number or number < 0 and not label.endswith("min_sqnr_db"):
        raise ConfigError(f"{label} = {value!r} must be a non-negative number")
    return number


def pyproject_section(rootdir: Path) -> dict:
    """`[tool.onnx2trt_check]` of rootdir/pyproject.toml, or {} when there is none."""
    path = rootdir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f).get("tool", {}).get("onnx2trt_check", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"'{path}' is not valid TOML ({exc}); fix the file") from None


def split_section(section: Mapping[str, object]) -> tuple[dict[str, object], dict[str, dict]]:
    """Separate the tolerance keys of a config table from its `outputs` sub-table."""
    outputs = section.get("outputs", {})
    if not isinstance(outputs, Mapping) or not all(isinstance(v, Mapping) for v in outputs.values()):
        raise ConfigError("[tool.onnx2trt_check.outputs] must hold one table per output name, e.g. [tool.onnx2trt_check.outputs.logits]")
    values = {k: v for k, v in section.items() if k in TOLERANCE_KEYS}
    return values, {name: dict(v) for name, v in outputs.items()}


def parse_output_tolerance(text: str) -> tuple[str, dict[str, float]]:
    """'logits:atol=1e-3,min_sqnr_db=30' -> ('logits', {'atol': 0.001, 'min_sqnr_db': 30.0})."""
    name, sep, body = text.rpartition(":")
    pairs = [p.partition("=") for p in body.split(",") if p.strip()]
    if not sep or not name or not pairs or any(not eq for _, eq, _ in pairs):
        raise ConfigError(f"output tolerance '{text}' is malformed; write OUTPUT:key=value[,key=value], e.g. logits:atol=1e-3")
    values = {k.strip(): v.strip() for k, _, v in pairs}
    return name, _checked(values, f"output tolerance '{text}'")


def parse_output_tolerances(lines: Iterable[str]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for line in lines:
        name, values = parse_output_tolerance(line)
        merged.setdefault(name, {}).update(values)
    return merged
