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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
