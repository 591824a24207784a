"""Found on foreign models (zoo3): an invalid model (torch 2.13's dynamo exporter with
optimize=False named a ReduceMean output 'mean' like the registered buffer 'mean': two definitions
of one name) with calibration data. ONNX Runtime refuses it (reference::run fails with its reason),
but the int8 build went on and crashed in onnx-ir: `pytest --model` showed ERROR for
quantize::report[int8] and trt::build[int8], and `bisect --target ort-int8` ended in a traceback.
The int8 build is calibrated on the model's ORT activations, so it now skips with the reason, as
the fp16 artifact does; bisect turns that into its one-line error (exit 4)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.cli.main import main


def duplicate_name_model() -> onnx.ModelProto:
    """Conv over (x - mean), whose ReduceMean output is also called 'mean'."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, np.float32), "mean"),
               numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["centered"]),
             helper.make_node("Conv", ["centered", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c"], ["mean"], axes=[2, 3], keepdims=0),
             helper.make_node("Relu", ["mean"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _files(folder):
    onnx.save(duplicate_name_model(), str(folder / "m.onnx"))
    rng = np.random.default_rng(1)
    np.savez(folder / "calib.npz", x=rng.uniform(0, 1, (10, 1, 3, 8, 8)).astype(np.float32))


def test_pytest_int8_items_skip_with_the_reason_instead_of_erroring(pytester):
    _files(pytester.path)
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--calibration-data", "calib.npz", "-p", "no:cacheprovider",
                                          "-k", "int8 or reference")
    outcomes = result.parseoutcomes()
    assert "error" not in outcomes and "errors" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*FAILED*reference::run*"])
    assert "ONNX Runtime cannot run the model" in result.stdout.str()


def test_bisect_ort_int8_is_one_line_not_a_traceback(tmp_path, capsys):
    _files(tmp_path)
    code = main(["bisect", str(tmp_path / "m.onnx"), "--target", "ort-int8", "--calibration-data", str(tmp_path / "calib.npz")])
    captured = capsys.readouterr()
    assert code == 4, captured
    assert "Traceback" not in captured.err and "ONNX Runtime cannot run" in captured.err
