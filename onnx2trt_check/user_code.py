"""A function from the user's own script, named `FILE.py[:func]` on the command line (a metric, a
reference run in the source framework). The script runs in this process: whatever framework it
imports is the user's, never a dependency of the suite. Every problem is a one-line ConfigError
naming the option and the fix."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError


def split_reference(reference: str, default: str) -> tuple[Path, str]:
    """'file.py:func' -> (Path('file.py'), 'func'); 'file.py' -> (Path('file.py'), default). A
    Windows drive letter ('C:\\x.py') is not taken for a function name."""
    text = str(reference)
    head, colon, name = text.rpartition(":")
    if colon and head.endswith(".py") and not text.endswith(".py"):
        return Path(head), name or default
    return Path(text), default


def load_function(reference: str, *, default: str, option: str) -> Callable:
    """The callable `func` of `FILE.py[:func]` (default `default`), imported once."""
    path, name = split_reference(reference, default)
    if path.suffix != ".py" or not path.is_file():
        raise ConfigError(f"{option} '{reference}': '{path}' is not an existing .py file; pass {option} FILE.py[:function]")
    spec = importlib.util.spec_from_file_location(f"onnx2trt_check_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's script: any failure is theirs to fix, shown in one line
        raise ConfigError(f"{option} script '{path}' failed to import: {type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{option} script '{path}' has no function '{name}'; define it or name another with {path}:function")
    return function
