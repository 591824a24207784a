"""Reading a .npz file of named arrays, or a .npy file of one array, without trusting it.

numpy.load alone reports a .npy file, a pickled or object array and a header whose shape is larger
than the data in ways that mislead (a talk about pickles) or crash (an allocation of the declared
size). Every member's header is read first, so each of those is a one-line InputDataError naming
the file, the array and the fix, and nothing is allocated for a shape the file cannot hold. Object
arrays are never unpickled. read_npy names any other kind of file (left16: `--labels metrics.py`
read "This file contains pickled (object) data. If you trust the file you can load it unsafely").
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from .errors import InputDataError

_NPY_MAGIC = b"\x93NUMPY"
_SAVE_HINT = "write it with numpy.savez(path, input_name=array)"


def read_npz(path: Path, option: str) -> dict[str, np.ndarray]:
    """The arrays of `path` by name; `option` names the command-line option in messages."""
    path = Path(path)
    _check_file(path, option)
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if not members:
            raise InputDataError(f"{option} '{path}' holds no arrays; {_SAVE_HINT}")
        for member in members:
            _check_member(archive, member, path, option)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, MemoryError) as exc:
        raise InputDataError(f"{option} '{path}' cannot be read ({type(exc).__name__}: {exc}); {_SAVE_HINT}") from None


def _check_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise InputDataError(f"{option} '{path}' is a folder; pass an .npz file")
    if not path.is_file():
        raise InputDataError(f"{option} file '{path}' does not exist; check the {option} path")
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head == _NPY_MAGIC:
        raise InputDataError(f"{option} '{path}' is a single .npy array, not an .npz archive of named arrays; {_SAVE_HINT}")
    raise InputDataError(f"{option} '{path}' is not an .npz archive (not a zip file); {_SAVE_HINT}")


# What a file that is not a .npy array is, by its name, for the message (numpy guesses a pickle).
_KINDS = {".py": "a Python script", ".onnx": "an ONNX model", ".csv": "a CSV file", ".tsv": "a TSV file", ".txt": "a text file",
          ".json": "a JSON file", ".npz": "an .npz archive", ".pt": "a PyTorch file", ".pth": "a PyTorch file",
          ".pkl": "a pickle, never loaded (unpickling runs code)", ".pickle": "a pickle, never loaded (unpickling runs code)"}


def read_npy(path: Path, option: str, hint: str) -> np.ndarray:
    """The one array of the .npy file `path`; a folder, a missing file and every other kind of file
    (a script, a model, text, a pickle, an .npz archive, an empty file), an object array and a
    header declaring more than the file holds are one-line InputDataErrors naming the file, what it
    is, and `hint` (what `option` takes)."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        raise InputDataError(f"{option} '{path}' {'is a folder' if path.is_dir() else 'does not exist'}; {hint}")
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
        if head != _NPY_MAGIC:
            raise InputDataError(f"{option} '{path}' is {_kind(path, head)}, not one array; {hint}")
        f.seek(0)
        try:
            shape, dtype, header_bytes = _header(f)
        except (ValueError, OSError, EOFError) as exc:
            raise InputDataError(f"{option} '{path}' is a .npy file whose header cannot be read ({exc}); {hint}") from None
    if dtype.hasobject:
        raise InputDataError(f"{option} '{path}' holds Python objects (dtype {dtype}), which are pickled and never loaded; {hint}")
    declared, stored = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize, path.stat().st_size - header_bytes
    if declared > stored:
        raise InputDataError(f"{option} '{path}' declares shape {list(shape)} ({declared} bytes) but holds {stored} bytes, truncated or corrupt; {hint}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:
        raise InputDataError(f"{option} '{path}' cannot be read ({type(exc).__name__}: {exc}); {hint}") from None


def _kind(path: Path, head: bytes) -> str:
    if not head:
        return "empty (0 bytes)"
    if zipfile.is_zipfile(path):
        return "an .npz archive" if path.suffix.lower() in ("", ".npz", ".npy") else "a zip archive"
    if path.suffix.lower() in _KINDS:
        return _KINDS[path.suffix.lower()]
    if head.startswith(b"\x80"):  # pickle protocol 2 and later
        return _KINDS[".pkl"]
    with open(path, "rb") as f:
        start = f.read(4096)
    try:
        start.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "a text file" if exc.start > len(start) - 4 and b"\0" not in start else "a binary file"
    return "a binary file" if b"\0" in start else "a text file"


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path, option: str) -> None:
    name = member.filename.removesuffix(".npy")
    where = f"{option} '{path}': array '{name}'"
    try:
        with archive.open(member) as f:
            shape, dtype, header_bytes = _header(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputDataError(f"{where} is not a readable .npy array ({exc}); {_SAVE_HINT}") from None
    if dtype.hasobject:
        raise InputDataError(f"{where} holds Python objects (dtype {dtype}), which are pickled and never loaded; save numeric arrays")
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    stored = member.file_size - header_bytes
    if declared > stored:
        raise InputDataError(f"{where} declares shape {list(shape)} ({declared} bytes) but holds {stored} bytes; the file is truncated or corrupt: {_SAVE_HINT}")


def _header(f) -> tuple[tuple[int, ...], np.dtype, int]:
    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(f)
    else:  # 3.0: a utf-8 header, read by numpy's own private reader
        shape, _, dtype = npy_format._read_array_header(f, version)
    return tuple(shape), np.dtype(dtype), f.tell()

