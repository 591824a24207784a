"""Type checks of the Python API's arguments (api.py), made before any work starts.

Python does not check annotations, and the API's arguments are read with truthiness and iteration:
per_channel="no" is true (per-channel weights, the opposite of what was meant), exclude="conv1"
iterates its letters, and percentile="99" fails deep inside as a TypeError. Each argument of the
kinds below is checked by name; a wrong kind is one ConfigError naming the argument and the fix, as
a bad command-line option is. Values (ranges, existence of files) are checked where they are read.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import os
from collections.abc import Mapping, Sequence

from .errors import ConfigError

FLAGS = ("force", "per_channel", "cle", "bias_correction", "fp16_no_fallback", "rank", "accept_degraded", "output_tail")
TEXT_LISTS = ("pytest_args", "exclude", "fp16_block", "output_tolerances")
NUMBERS = ("percentile", "atol", "rtol", "min_cosine", "min_sqnr_db", "max_metric_drop")
PATHS = ("output", "inputs", "calibration_data", "plot", "output_dir", "labels", "project", "report_json")


def checked_arguments(function):
    """`function` with its arguments' kinds checked at each call (see the module docstring)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def call(*args, **kwargs):
        for name, value in signature.bind(*args, **kwargs).arguments.items():
            problem = _problem(name, value)
            if problem:
                raise ConfigError(f"{function.__name__}({name}={value!r}): {problem}")
        return function(*args, **kwargs)

    return call


def _problem(name: str, value) -> str | None:
    if name in FLAGS and not isinstance(value, bool):
        return "pass True or False"
    if value is None:
        return None
    if name in TEXT_LISTS and (isinstance(value, str | bytes) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value)):
        return f"pass a list of strings, e.g. {name}=[{value!r}]" if isinstance(value, str) else "pass a list of strings"
    if name in NUMBERS and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        return "pass a number"
    if name in PATHS and not isinstance(value, str | os.PathLike):
        return "pass a path (str or pathlib.Path)"
    if name == "passes" and (not isinstance(value, str | Sequence) or not all(isinstance(v, str) for v in value)):
        return "pass transform names: a list of strings or one comma-separated string"
    if name == "passes" and not value:  # [] ran every transform: the opposite of what it says
        return "names no transform; leave it out (None) for all of them, or name some"
    if name == "input_shapes" and not isinstance(value, Mapping):
        return "pass a dict {input name: (dim, ...)}, e.g. {'images': (1, 3, 224, 224)}"
    return None
