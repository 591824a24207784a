"""gate13: a baseline that could not be written because a folder stood where the file goes said
"cannot write '...' (File exists); free space or choose another path": freeing space fixes nothing."""

from __future__ import annotations

import errno

import pytest

from onnx2trt_check import fileio
from onnx2trt_check.errors import OutputPathError


def test_a_folder_in_the_way_does_not_suggest_freeing_space(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(OutputPathError) as caught:
        fileio.atomic_write_text(tmp_path / "out.json", "{}")
    assert "free space" not in str(caught.value) and "choose another path" in str(caught.value)


def test_a_full_disk_still_does(tmp_path, monkeypatch):
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "_write_then_rename", full)
    with pytest.raises(OutputPathError, match="No space left on device.*free space or choose another path"):
        fileio.atomic_write_text(tmp_path / "out.json", "{}")
