"""Writing outputs without ever leaving a partial file or clobbering the user's files."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, OutputPathError

if TYPE_CHECKING:
    import onnx

# protobuf cannot serialize a message of 2 GiB or more. A model whose weights (initializers) hold
# more than this (the margin is for the rest of the model) is saved with its large weights in
# `<file>.data` beside it (ONNX external data), tensor by tensor, never as one protobuf.
EXTERNAL_DATA_BYTES = 2**31 - 2**26
# Tensors below this size stay inside the model file (onnx.save's own default threshold).
_EXTERNAL_TENSOR_BYTES = 1024


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it: readers see the old file or
    the new one, never a half-written one. A failed write (full disk, read-only folder) is an
    OutputPathError naming the path, and nothing is left behind."""
    path = Path(path)
    try:
        _write_then_rename(path, lambda f: f.write(data))
    except OSError as exc:
        raise OutputPathError(f"cannot write '{path}' ({exc.strerror or exc}); {_write_fix(exc)}") from None


def _write_fix(exc: OSError) -> str:
    """The fix a failed write suggests: "free space" only when space ran out (a folder where the file
    goes, "File exists", was told to free space)."""
    return "free space or choose another path" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "choose another path"


def _write_then_rename(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def file_set(folder: str | os.PathLike, *, force: bool, remove: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Write several files as one (a model and its inputs, a model and its recipe): the block writes
    them, under their final names, into the folder it is given (a hidden one in `folder`); when it
    ends without error every file there (with any it wrote beside them: a model's external data) is
    renamed into `folder` and the files of `remove` are deleted, SIGINT/SIGTERM held meanwhile. A
    failure or Ctrl-C in the block leaves the old set, never a new model beside old inputs; the
    hidden folder is removed either way. Without `force` no existing file is replaced (nothing is)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".onnx2trt_check-", dir=folder))
    except OSError as exc:
        raise OutputPathError(f"cannot write into '{folder}' ({exc.strerror or exc}); choose another path") from None
    try:
        yield stage
        if not force and (taken := [name for name in sorted(os.listdir(stage)) if (folder / name).exists()]):
            raise OutputPathError(f"'{folder / taken[0]}' already exists; pass --force or choose another path")
        with _signals_held():
            for name in sorted(os.listdir(stage)):
                os.replace(stage / name, folder / name)
            for path in remove:
                Path(path).unlink(missing_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot write into '{folder}' ({exc.strerror or exc}); free space or choose another path") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def renamed_together(paths: Iterable[str | os.PathLike]) -> Iterator[dict[Path, Path]]:
    """Files of one result in any folders (bisect's --plot and --json; file_set is for one folder):
    the block writes each to the hidden path it is given, beside the final one; when it ends without
    error all are renamed into place, SIGINT/SIGTERM held, so a stop or a failure midway leaves every
    old file (a new plot beside the old JSON was possible). No hidden file is left either way."""
    token = f"{os.getpid()}-{os.urandom(4).hex()}"
    staged = {Path(p): Path(p).parent / f".{Path(p).name}.{token}.staged" for p in paths}
    try:
        yield staged
        with _signals_held():
            for final, stage in staged.items():
                os.replace(stage, final)
    except OSError as exc:
        raise OutputPathError(f"cannot write {', '.join(map(str, staged))} ({exc.strerror or exc}); free space or choose another path") from None
    finally:
        for stage in staged.values():
            stage.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM arriving in the block act when it ends (raised again then), so a set of
    renames is never cut in two."""
    from .leftovers import signals_held

    with signals_held() as caught:
        yield
    if caught:
        signal.raise_signal(caught[0])


def refuse_overwrite(path: str | os.PathLike, *, force: bool, flag: str = "--force") -> None:
    """Raise when `path` exists and the user did not pass the overwrite flag."""
    if Path(path).exists() and not force:
        raise ConfigError(f"'{path}' already exists; pass {flag} to overwrite it or choose another output path")


def checked_output(model, output: str | os.PathLike, *, force: bool, option: str = "-o") -> Path:
    """The output path, refused when it is the input model, a folder, a device, unwritable, or
    exists without `force` (validate.output_file)."""
    from .validate import not_dash, not_empty, output_file, resolved

    path = Path(not_dash(not_empty(output, option), option))
    if isinstance(model, str | os.PathLike) and resolved(path, option) == resolved(model, "the model path"):
        raise ConfigError(f"{option} '{output}' is the input model; write the result to another path")
    if isinstance(model, str | os.PathLike) and path.is_file() and path.resolve() in _weight_files(Path(model)):
        raise ConfigError(f"{option} '{output}' holds the input model's weights (its external data); write the result to another path")
    return output_file(path, option, force=force)


def _weight_files(model: Path) -> set[Path]:
    from .model import external_data_files

    return external_data_files(model) if model.is_file() else set()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unique_path(directory: Path, stem: str, suffix: str) -> Path:
    """`directory/stem.suffix`, or `stem.1.suffix`, `stem.2.suffix`... when taken. The name is
    claimed by creating the file exclusively, so parallel workers never pick the same one."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(10_000):
        path = directory / (f"{stem}{suffix}" if index == 0 else f"{stem}.{index}{suffix}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"'{directory}' holds 10000 plots named {stem}*; clear the folder or pass another folder")


# ---------------------------------------------------------------------------------- models


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, force: bool = True) -> Path:
    """Write `model` to `path` atomically. When its initializers hold more than EXTERNAL_DATA_BYTES,
    the large ones go to `<path>.data` (written first, renamed into place, then the model file),
    which `force=False` refuses to replace. `model` is never modified: the file written is a shell
    whose large initializers point into the data file, and each weight is copied once, on its way
    to the data file (onnx.save_model would convert the proto it is given)."""
    path = Path(path)
    large = [t for t in model.graph.initializer if t.HasField("raw_data") and _stored_bytes(t) >= _EXTERNAL_TENSOR_BYTES]
    if sum(_stored_bytes(t) for t in large) <= EXTERNAL_DATA_BYTES:
        atomic_write_bytes(path, model.SerializeToString())
        return path
    data_path = path.with_name(path.name + ".data")
    if data_path.exists() and not force:
        raise OutputPathError(f"'{data_path}' (the external data of '{path}') already exists; pass --force or choose another path")
    try:
        _save_with_external_data(model, path, data_path, large)
    except OSError as exc:
        raise OutputPathError(f"cannot write '{path}' ({exc.strerror or exc}); {_write_fix(exc)}") from None
    return path


def _stored_bytes(tensor) -> int:
    """raw_data's length from the tensor's shape and type: reading the field makes a bytes copy, and
    ByteSize() fails on a tensor of 2 GiB or more."""
    from .protos import raw_data_bytes

    try:
        return raw_data_bytes(tensor)
    except (KeyError, TypeError, ValueError):
        return len(tensor.raw_data)


def _save_with_external_data(model: onnx.ModelProto, path: Path, data_path: Path, large: list) -> None:
    places: dict[str, tuple[int, int]] = {}

    def write_tensors(f) -> None:
        for tensor in large:
            places[tensor.name] = (f.tell(), _stored_bytes(tensor))
            f.write(tensor.raw_data)  # one tensor's bytes at a time

    _write_then_rename(data_path, write_tensors)
    try:
        shell = _shell(model, places, data_path.name)
        _write_then_rename(path, lambda f: f.write(shell.SerializeToString()))
    except BaseException:
        data_path.unlink(missing_ok=True)
        raise


def _shell(model: onnx.ModelProto, places: dict[str, tuple[int, int]], location: str) -> onnx.ModelProto:
    """`model` with the initializers named in `places` as external-data entries (offset, length)."""
    import onnx

    from .protos import model_with_graph

    graph = onnx.GraphProto()
    for field, value in model.graph.ListFields():
        if field.name == "initializer":
            continue
        if hasattr(value, "extend"):  # a repeated field
            getattr(graph, field.name).extend(value)
        elif field.message_type is not None:
            getattr(graph, field.name).CopyFrom(value)
        else:
            setattr(graph, field.name, value)
    for tensor in model.graph.initializer:
        if tensor.name not in places:
            graph.initializer.add().CopyFrom(tensor)
            continue
        stub = graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims, data_location=onnx.TensorProto.EXTERNAL)
        offset, length = places[tensor.name]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
            stub.external_data.add(key=key, value=value)
    return model_with_graph(model, graph)
