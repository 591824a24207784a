"""Red team 6: commands that write more than one file wrote them one after the other. A failure or
Ctrl-C between the two (`bisect --reduce --force`: model.onnx, then inputs.npz; `optimize --force`
with output_tail: OUT.recipe.json, then OUT.onnx) left a new file beside an old one: a reduced model
with the inputs of another, a recipe describing a model it does not belong to. Each set is now
written as one (fileio.file_set): staged in a hidden folder, renamed together with SIGINT/SIGTERM
held; a failure leaves the old set and no hidden folder."""

from __future__ import annotations

import os
import signal

import numpy as np
import onnx
import pytest
from test_cli_optimize_recipe import _tail_detector
from tiny_models import classifier

import onnx2trt_check as o2t
from onnx2trt_check import fileio
from onnx2trt_check.bisection import reduce as reduce_module
from onnx2trt_check.bisection.reduce import ReducedModel
from onnx2trt_check.errors import OutputPathError


def _old_pair(folder, names):
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"old " + name.encode())
    return {name: (folder / name).read_bytes() for name in names}


def _reduced():
    return ReducedModel(classifier(), [{"x": np.zeros((1, 3, 8, 8), np.float32)}], ["conv"], 3, 5)


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_reduce_keeps_the_old_pair_when_the_second_file_fails(tmp_path, monkeypatch, failure):
    before = _old_pair(tmp_path / "out", ["model.onnx", "inputs.npz"])

    def fail(path, data):
        raise failure

    monkeypatch.setattr(reduce_module, "atomic_write_bytes", fail)
    with pytest.raises((KeyboardInterrupt, OSError, OutputPathError)):
        _reduced().save(tmp_path / "out", force=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # no new model, no hidden folder


def test_reduce_writes_both_when_all_goes_well(tmp_path):
    _old_pair(tmp_path / "out", ["model.onnx", "inputs.npz"])
    model, inputs = _reduced().save(tmp_path / "out", force=True)
    assert onnx.load(model).graph.node[0].name == "conv"
    assert list(np.load(inputs)) == ["x"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["inputs.npz", "model.onnx"]


def test_optimize_keeps_the_old_model_and_recipe_when_the_model_fails(tmp_path, monkeypatch):
    detector = tmp_path / "det.onnx"
    onnx.save(_tail_detector("nearest"), str(detector))
    before = _old_pair(tmp_path / "out", ["det.opt.onnx", "det.opt.recipe.json"])

    def interrupted(model, path, **_):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "save_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        o2t.optimize(detector, output=tmp_path / "out" / "det.opt.onnx", output_tail=True, force=True, passes=["output_tail"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_a_signal_during_the_renames_acts_after_the_last(tmp_path, monkeypatch):
    real_replace, calls = os.replace, []

    def replace_then_signal(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(fileio.os, "replace", replace_then_signal)
    # Python's own SIGINT handler, whatever this process inherited: a run started in the background
    # of a non-interactive shell ignores SIGINT, and the held signal then acts as nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with fileio.file_set(tmp_path, force=True) as stage:
                (stage / "a.onnx").write_text("a")
                (stage / "b.npz").write_text("b")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.npz"]


def test_without_force_no_staged_file_replaces_one(tmp_path):
    (tmp_path / "m.onnx.data").write_text("someone's weights")
    with pytest.raises(OutputPathError, match="m.onnx.data' already exists"):
        with fileio.file_set(tmp_path, force=False) as stage:
            (stage / "m.onnx").write_text("new")
            (stage / "m.onnx.data").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx.data"]
    assert (tmp_path / "m.onnx.data").read_text() == "someone's weights"


def test_a_folder_that_cannot_be_made_is_one_error(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OutputPathError, match="cannot write into"):
        with fileio.file_set(tmp_path / "file" / "sub", force=True):
            pass
