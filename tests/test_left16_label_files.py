"""left16: `--labels metrics.py` (a Python file, or an ONNX model, a CSV) said "is not a readable .npy
array (This file contains pickled (object) data. If you trust the file you can load it unsafely using
the `allow_pickle=` keyword argument ...)": numpy's talk of pickles for any file without the .npy
magic, with advice to unpickle. Now every wrong kind of file is one line naming the file, what it
is, and what --labels takes (a .npy file of one label per feed row), a usage error (exit 4) before
any item runs, the same for `pytest --model`, `onnx2trt-check quantize` and `bisect --sensitivity`
(all read it through task_metrics.load_labels)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest

from onnx2trt_check.errors import CheckError
from onnx2trt_check.task_metrics import load_labels

EXPECTS = "--labels takes a .npy file of one label per feed row"


def _write(tmp_path: Path, kind: str) -> Path:
    if kind == "python":
        path = tmp_path / "metrics.py"
        path.write_text("def metric(outputs, labels):\n    return {'a': 1.0}\n")
    elif kind == "onnx":
        path = tmp_path / "model.onnx"
        onnx.save(onnx.parser.parse_model('<ir_version: 8, opset_import: ["": 18]> g (float[2] x) => (float[2] y) { y = Relu(x) }'), path)
    elif kind == "empty":
        path = tmp_path / "labels.npy"
        path.write_bytes(b"")
    elif kind == "csv":
        path = tmp_path / "labels.csv"
        path.write_text("0,1,2\n")
    elif kind == "pickle":
        path = tmp_path / "labels.pkl"
        path.write_bytes(pickle.dumps([0, 1, 2]))
    elif kind == "objects":
        path = tmp_path / "labels.npy"
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "truncated":  # a header that declares far more than the file holds: no allocation of it
        path = tmp_path / "labels.npy"
        np.save(path, np.arange(4, dtype=np.int64))
        path.write_bytes(path.read_bytes().replace(b"(4,)", b"(4000000000000,)".ljust(4)))
    elif kind == "binary":
        path = tmp_path / "labels.bin"
        path.write_bytes(bytes(range(256)))
    return path


CASES = {
    "python": "is a Python script, not one array",
    "onnx": "is an ONNX model, not one array",
    "empty": "is empty (0 bytes), not one array",
    "csv": "is a CSV file, not one array",
    "pickle": "is a pickle, never loaded (unpickling runs code), not one array",
    "objects": "holds Python objects (dtype object), which are pickled and never loaded",
    "truncated": "declares shape [4000000000000]",
    "binary": "is a binary file, not one array",
}


@pytest.mark.parametrize("kind", CASES)
def test_every_wrong_kind_of_file_is_named_with_what_labels_takes(tmp_path, kind):
    path = _write(tmp_path, kind)
    with pytest.raises(CheckError) as raised:
        load_labels(path)
    message = str(raised.value)
    assert f"--labels '{path}' " in message and CASES[kind] in message and EXPECTS in message, message
    assert "\n" not in message and "allow_pickle" not in message and "If you trust" not in message, message


def test_labels_of_numbers_or_strings_still_load(tmp_path):
    for array in (np.arange(3), np.array(["cat", "dog"]), np.ones((2, 4), np.float32)):
        np.save(tmp_path / "l.npy", array)
        np.testing.assert_array_equal(load_labels(tmp_path / "l.npy"), array)


MODEL = '<ir_version: 8, opset_import: ["": 18]> g (float[N,3] x) => (float[N,3] y) { y = Relu(x) }'


@pytest.mark.parametrize("kind", ["python", "onnx", "csv"])
def test_both_faces_refuse_it_before_any_item_with_exit_4(pytester, tmp_path, kind):
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "conftest.py").write_text("# the user's own conftest\n")
    model = folder / "m.onnx"
    onnx.save(onnx.parser.parse_model(MODEL), model)
    np.savez(folder / "data.npz", x=np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
    labels = _write(folder, kind)
    before = sorted(p.name for p in folder.iterdir())
    result = pytester.runpytest_inprocess("--model", str(model), "--inputs", str(folder / "data.npz"), "--labels", str(labels), "--target", "ort")
    assert result.ret == 4, result.stdout.str()
    errors = "\n".join(result.errlines)
    assert CASES[kind] in errors and EXPECTS in errors and "Traceback" not in errors and "pickled" not in errors, errors
    cli = subprocess.run([sys.executable, "-m", "onnx2trt_check.cli", "quantize", str(model), "-o", str(folder / "q.onnx"),
                          "--calibration-data", str(folder / "data.npz"), "--inputs", str(folder / "data.npz"), "--labels", str(labels)],
                         capture_output=True, text=True, cwd=folder)
    assert cli.returncode == 4, cli.stdout + cli.stderr
    lines = [line for line in (cli.stdout + cli.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and CASES[kind] in lines[0] and EXPECTS in lines[0], lines
    assert sorted(p.name for p in folder.iterdir()) == before
