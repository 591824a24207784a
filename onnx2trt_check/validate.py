"""Checks of option values and output paths that every face runs before any work starts.

Each problem is one line naming the option, the value and the fix (a ConfigError, exit code 4).
Output paths are checked without leaving anything behind: a folder that would hold an output is
probed by creating and removing one empty file in it (permission bits do not tell, e.g. for root or
on a read-only mount), and its file system must have free space.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from .errors import ConfigError, OutputPathError


def number(value, option: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           example: str = "") -> float:
    """`value` as a finite float in [low, high] (open at `low` when `low_open`); None stays None."""
    if value is None:
        return None
    hint = f", e.g. {option} {example}" if example else ""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option} {value!r} is not a number; pass a finite number{hint}") from None
    if not math.isfinite(result):
        raise ConfigError(f"{option} {value} is not finite; pass a finite number{hint}")
    if low is not None and (result < low or (low_open and result == low)):
        raise ConfigError(f"{option} {value} must be {'above' if low_open else 'at least'} {low:g}{hint}")
    if high is not None and result > high:
        raise ConfigError(f"{option} {value} must be at most {high:g}{hint}")
    return result


def integer(value, option: str, *, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ConfigError(f"{option} {value!r} is not a whole number; pass an integer >= {low}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{option} {value} must be {bound}")
    return int(value)


def seed(value) -> int:
    """A seed numpy's generators take: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ConfigError(f"--seed {value} is not a seed numpy takes; pass an integer from 0 to 2**64 - 1, e.g. --seed 0")
    return value


# ---------------------------------------------------------------------------------- output paths


def idle_beside(given: dict[str, bool], beside: str, why: str) -> None:
    """Refuse the options of `given` that are set and would change nothing beside option `beside`
    (misuse: the run would report a configuration the user did not get)."""
    if idle := [flag for flag, is_set in given.items() if is_set]:
        raise ConfigError(f"{', '.join(idle)} would change nothing with {beside}: {why}; leave {'them' if len(idle) > 1 else 'it'} out, or leave out {beside}")


def idle_without(flags: list[str], needed: str, why: str) -> None:
    """Refuse `flags` (the ones given) that would change nothing without option `needed`."""
    if flags:
        raise ConfigError(f"{', '.join(flags)} would change nothing without {needed} ({why}); add {needed} or leave "
                          f"{'it' if len(flags) == 1 else 'them'} out")


def not_empty(path, option: str, *, required: bool = False):
    """`path` unless it is an empty text: Path('') is the current folder, so `--inputs "$DATA"` with
    DATA unset (or inputs="" in the API) would read or write there, or be taken as left out."""
    if isinstance(path, str | os.PathLike) and not os.fspath(path).strip():
        raise ConfigError(f"{option} is empty; pass a path (is a variable unset?){'' if required else ' or leave it out'}")
    return no_nul(path, option)


def no_nul(path, option: str):
    """`path` unless it holds a NUL character, which the OS takes in no file name (an API argument
    built from data: a ValueError 'embedded null byte' from deep inside a read or a write)."""
    if isinstance(path, str | os.PathLike) and "\0" in os.fspath(path):
        raise ConfigError(f"{option} {os.fspath(path)!r} holds a NUL character, which no file name can; pass the path without it")
    return path


def resolved(path, option: str) -> Path:
    """`path` made absolute with its links followed; a symlink loop (RuntimeError in Python 3.11,
    OSError later) is one line naming the option, not a traceback."""
    try:
        return Path(no_nul(path, option)).resolve()
    except (RuntimeError, OSError) as exc:
        raise OutputPathError(f"{option} '{path}' cannot be resolved ({exc}); pass a path that is no symlink loop") from None


def not_dash(path, option: str):
    """`path` unless it is the text '-': standard output to a user (`-o -`), which wrote a file named
    '-' into the current folder. Path('./-') is Path('-'): only the text given is told apart."""
    if isinstance(path, str) and path == "-":
        raise OutputPathError(f"{option} '-' would be a file or folder named '-' in the current folder, not standard output "
                              "(which takes no model or report); pass a path ('./-' if you mean that name)")
    return path


def output_file(path, option: str, *, force: bool = False, flag: str = "--force") -> Path:
    """A file path this run may write: not a folder or a device, not an existing file unless
    `force`, in a writable folder with free space (the folder may not exist yet)."""
    path = Path(not_dash(not_empty(path, option), option))
    resolved(path, option)  # a symlink loop: is_dir() and exists() are False, and the write replaced the link
    if path.is_dir():
        raise OutputPathError(f"{option} '{path}' is a folder; pass a file path")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{option} '{path}' is not a regular file (a device, a pipe or a socket); pass a file path")
    if path.exists() and not force:
        raise OutputPathError(f"{option} '{path}' already exists; pass {flag} to overwrite it or choose another path")
    writable_folder(path.parent, option, path)
    return path


def output_folder(path, option: str) -> Path:
    """A folder this run may create files in: not a file, creatable, writable, with free space."""
    path = Path(not_dash(not_empty(path, option), option))
    resolved(path, option)  # a symlink loop was taken for a file, or made later writes fail
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} '{path}' is a file; pass a folder")
    writable_folder(path, option, path)
    return path


def writable_folder(folder: Path, option: str, path: Path) -> None:
    """Raise unless files can be created in `folder` (or, when it does not exist yet, in the
    nearest folder above it, where it would be created)."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputPathError(f"{option} '{path}' is under '{existing}', which is a file; choose another path")
    try:
        handle, probe = tempfile.mkstemp(prefix=".onnx2trt_check-probe-", dir=existing)
    except OSError as exc:
        raise OutputPathError(f"{option} '{path}': cannot create files in '{existing}' ({exc.strerror}); choose a writable location") from None
    os.close(handle)
    os.unlink(probe)
    if _free_bytes(existing) == 0:
        raise OutputPathError(f"{option} '{path}': the disk holding '{existing}' is full; free space or choose another location")


def _nearest_existing(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    blocks = stats.f_bfree if getattr(os, "geteuid", lambda: -1)() == 0 else stats.f_bavail  # root may use the reserved blocks
    return blocks * stats.f_frsize


def distinct_outputs(outputs: list[tuple[str, object]], inputs: dict[str, object]) -> None:
    """Refuse an output ((option, path) pairs, path None when not given) that is one of the run's
    input files (option -> path or FILE.py[:FUNC]) or the path of an earlier output: --force
    replaces the user's earlier result, never their data, and two outputs on one path leave one."""
    paths = {option: path for option, path in inputs.items() if isinstance(path, str | os.PathLike)}
    given = {option: resolved(path, option) for option, path in paths.items()}
    sources = {option: resolved(_script_file(path), option) for option, path in paths.items()}
    written: dict[Path, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        where = resolved(path, option)
        if source := next((o for o in given if where in (given[o], sources[o])), None):
            raise OutputPathError(f"{option} '{path}' is the {source} file; write the result to another path")
        if where in written:
            raise OutputPathError(f"{option} '{path}' is also the {written[where]} path; give each output its own path")
        written[where] = option


def _script_file(source) -> str:
    """The file of a data-loader source FILE.py:FUNC (the source itself otherwise)."""
    text = os.fspath(source)
    head, sep, func = text.rpartition(":")
    return head if sep and head.endswith(".py") and func.isidentifier() else text


def input_file(path, option: str, *, fix: str) -> Path:
    """An input file that exists and is a file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} '{path}' is a folder; {fix}")
    if not path.is_file():
        raise ConfigError(f"{option} file '{path}' does not exist; {fix}")
    return path


def once_per_name(texts, parse, option: str) -> dict:
    """{name: value} of a repeatable NAME:VALUE option (`parse(text)` -> (name, value)); a name
    given twice with different values is a usage error: the last was kept without a word
    (--input-range x:0,1 --input-range x:5,6 drew 5..6), as argparse keeps the last of an option."""
    given: dict = {}
    texts_of: dict = {}
    for text in texts:
        name, parsed = parse(text)
        if name in given and given[name] != parsed:
            what = "every input" if name == "*" else f"'{name}'"
            raise ConfigError(f"{option} gives {what} twice ('{texts_of[name]}', then '{text}'); give it once")
        given[name], texts_of[name] = parsed, text
    return given
