"""What a baseline file must hold to be compared with: the schema, and the figures' valid values.

Every figure read from a file is checked here (present, of its type, finite where a measurement is
finite), so a hand-broken baseline fails naming the file and the field instead of turning a NaN into
an "improvement". baseline.py checks what it loads and what it is about to write.
"""

from __future__ import annotations

import math

SCHEMA_VERSION = 1

# Hand-written rather than a schema library: no JSON-schema package is a dependency, and a dozen
# typed fields do not justify one. Paths are nested keys; the value is the accepted type(s).
REQUIRED_FIELDS: tuple[tuple[tuple[str, ...], type | tuple[type, ...]], ...] = (
    (("model",), dict),
    (("model", "name"), str),
    (("model", "sha256"), str),
    (("target",), dict),
    (("target", "name"), str),
    (("target", "build_options"), dict),
    (("tool_versions",), dict),
    (("environment",), dict),
    (("accuracy",), dict),
    (("latency",), (dict, type(None))),
    (("created",), str),
)


def schema_problem(document: object) -> str | None:
    """The first thing wrong with a parsed file, or None."""
    if not isinstance(document, dict):
        return f"top level is {type(document).__name__}, expected an object"
    version = document.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return f"schema_version is {version!r}, expected {SCHEMA_VERSION}"
    for keys, expected in REQUIRED_FIELDS:
        problem = _field_problem(document, keys, expected)
        if problem:
            return problem
    return accuracy_problem(document["accuracy"]) or _latency_problem(document["latency"])


def _field_problem(document: dict, keys: tuple[str, ...], expected) -> str | None:
    value = document
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return f"field {'.'.join(keys)!r} is missing"
        value = value[key]
    if not isinstance(value, expected):
        names = "/".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        return f"field {'.'.join(keys)!r} is {type(value).__name__}, expected {names}"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The values a figure can take when it was measured: every figure is finite, but SQNR is +inf for
# identical outputs and max_rel +inf for an error where the reference is 0. NaN is never a figure.
_FIGURE_RANGES = {"sqnr_db": (-math.inf, math.inf), "cosine": (-1.0, 1.0), "top1": (0.0, 1.0),
                  "max_abs": (0.0, math.inf), "mean_abs": (0.0, math.inf), "max_rel": (0.0, math.inf)}
_MAY_BE_INFINITE = {"sqnr_db": math.inf, "max_rel": math.inf}


def accuracy_problem(accuracy: object) -> str | None:
    """What is wrong with an accuracy block (output -> metric -> figure), or None. Used on every
    file read and on every block about to be written."""
    if not isinstance(accuracy, dict):
        return f"field 'accuracy' is {type(accuracy).__name__}, expected dict"
    for output, metrics in accuracy.items():
        if not isinstance(metrics, dict):
            return f"accuracy of output {output!r} is {type(metrics).__name__}, expected an object"
        for metric, value in metrics.items():
            if problem := _figure_problem(metric, value):
                return f"accuracy {output!r}.{metric!r} is {value!r}, {problem}"
    return None


def _figure_problem(metric: str, value: object) -> str | None:
    if not _is_number(value):
        return "expected a number"
    if math.isnan(value) or (math.isinf(value) and value != _MAY_BE_INFINITE.get(metric)):
        return "not a finite number"
    low, high = _FIGURE_RANGES.get(metric, (-math.inf, math.inf))
    return None if low <= value <= high else f"outside [{low}, {high}]"


def _latency_problem(latency: dict | None) -> str | None:
    if latency is None:
        return None
    data, warmup = latency.get("data"), latency.get("warmup")
    if not isinstance(data, list) or not data or not all(_is_number(s) and math.isfinite(s) and s >= 0 for s in data):
        return "field 'latency.data' must be a non-empty list of finite non-negative seconds"
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        return f"field 'latency.warmup' is {warmup!r}, expected an integer"
    return None
