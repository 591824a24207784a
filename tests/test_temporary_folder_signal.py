"""CI, once: `onnx2trt-check bisect` stopped by Ctrl-C left its onnx2trt_check-bisect-* folder in the
temporary folder. A signal that lands between TemporaryDirectory's mkdir and the registration of its
removal (a process descheduled there under load) raised KeyboardInterrupt inside its constructor, and
nothing removed the folder. Every temporary folder of the package is now made with the signals held
(leftovers.temporary_folder)."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest

from onnx2trt_check.leftovers import temporary_folder


@pytest.fixture
def ctrl_c_right_after_mkdir(tmp_path, monkeypatch):
    """mkdtemp that receives a Ctrl-C the moment its folder exists; the temporary folder, fresh."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    real = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    # Python's own handler, whatever this process inherited (a background run ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield folder
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_at_the_mkdir_leaves_no_folder(ctrl_c_right_after_mkdir):
    with pytest.raises(KeyboardInterrupt):
        with temporary_folder("onnx2trt_check-bisect-"):
            pass
    assert list(ctrl_c_right_after_mkdir.iterdir()) == []


def test_plain_temporary_directory_leaks_there(ctrl_c_right_after_mkdir):
    """What the helper guards against, shown on the standard library itself."""
    with pytest.raises(KeyboardInterrupt):
        with tempfile.TemporaryDirectory(prefix="onnx2trt_check-bisect-"):
            pass
    assert len(list(ctrl_c_right_after_mkdir.iterdir())) == 1


def test_the_package_makes_every_temporary_folder_that_way():
    package = Path(__file__).resolve().parents[1] / "onnx2trt_check"
    users = [str(p.relative_to(package)) for p in package.rglob("*.py") if "tempfile.TemporaryDirectory(" in p.read_text()]
    assert users == ["leftovers.py"], users
