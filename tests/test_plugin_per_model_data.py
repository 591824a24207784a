"""A folder of models, each with its own data: `{model}` in --inputs, --calibration-data and
--labels names each model's file (its file name without .onnx)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _linear(features: int) -> onnx.ModelProto:
    """x[1, features] -> MatMul -> logits[1, 3]."""
    weight = numpy_helper.from_array(np.random.default_rng(features).normal(size=(features, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc")], "linear",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, features])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _models(pytester) -> None:
    """Two models with different input sizes, so one shared data file could not fit both."""
    for name, feature in (("small", 4), ("large", 6)):
        onnx.save(_linear(feature), str(pytester.path / f"{name}.onnx"))
        count = 3 if name == "small" else 5
        rng = np.random.default_rng(feature)
        np.savez(pytester.path / f"{name}.npz", x=rng.random((count, 1, feature), dtype=np.float32))
        np.savez(pytester.path / f"{name}.calib.npz", x=rng.random((10, 1, feature), dtype=np.float32))
        np.save(pytester.path / f"{name}.labels.npy", rng.integers(0, 2, count))


def _report(pytester) -> dict:
    return json.loads((pytester.path / "r.json").read_text())["models"]


def test_each_model_reads_its_own_files(pytester):
    _models(pytester)
    result = pytester.runpytest_inprocess("--model", ".", "--inputs", "{model}.npz", "--calibration-data", "{model}.calib.npz",
                                          "--labels", "{model}.labels.npy", "--target", "ort", "--target", "ort-int8",
                                          "-k", "reference or task", "--report-json", "r.json")
    assert result.ret == 0, result.stdout.str()[-3000:]
    models = _report(pytester)
    for name, count in (("small", 3), ("large", 5)):
        notes = models[f"{name}.onnx"]["notes"]
        assert f"inputs: npz:{name}.npz, {count} feed(s)" in notes, notes
        assert models[f"{name}.onnx"]["families"]["task[reference]"]["verdict"] == "passed"


def test_a_model_without_its_file_fails_alone(pytester):
    _models(pytester)
    (pytester.path / "large.npz").unlink()
    result = pytester.runpytest_inprocess("--model", ".", "--inputs", "{model}.npz", "--target", "ort", "-k", "reference or load",
                                          "--report-json", "r.json")
    assert result.ret == 1
    models = _report(pytester)
    assert models["small.onnx"]["families"]["reference"]["verdict"] == "passed"
    load = models["large.onnx"]["families"]["model"]["checks"]["load"]
    assert load["outcome"] == "failed" and "large.npz" in load["message"]


def test_one_model_without_its_file_is_a_usage_error(pytester):
    _models(pytester)
    result = pytester.runpytest_inprocess("--model", "small.onnx", "--calibration-data", "{model}.missing.npz", "--target", "ort-int8")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*small.missing.npz*"])
