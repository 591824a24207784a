"""Writing outputs without ever leaving a partial file or clobbering the user's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it: readers see the old file or
    the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def refuse_overwrite(path: str | os.PathLike, *, force: bool, flag: str = "--force") -> None:
    """Raise when `path` exists and the user did not pass the overwrite flag."""
    if Path(path).exists() and not force:
        raise ConfigError(f"'{path}' already exists; pass {flag} to overwrite it or choose another output path")


def checked_output(model, output: str | os.PathLike, *, force: bool) -> Path:
    """The output path, refused when it is the input model or exists without `force`."""
    path = Path(output)
    if isinstance(model, str | os.PathLike) and path.resolve() == Path(model).resolve():
        raise ConfigError(f"-o '{output}' is the input model; write the result to another path")
    refuse_overwrite(path, force=force)
    return path


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
