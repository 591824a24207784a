"""A model whose float output's size depends on the data (NonMaxSuppression's detections [K]): the
automatic calibration scored each candidate by the output SQNR over all feeds at once, and a candidate
that kept a different number of detections than the float model crashed it with numpy's 'operands
could not be broadcast together with shapes (80,) (76,)' (hunt17: a hand-built YOLOv8-style NMS
head, target[ort-int8] and quantize[int8] ERROR, `onnx2trt-check quantize` a traceback)."""

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.cli.main import main
from onnx2trt_check.quant.objective import output_sqnr_db


def nms_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    grid = np.array([[[c * 2.0, r * 2.0, c * 2.0 + 1.0, r * 2.0 + 1.0] for r in range(8) for c in range(8)]], np.float32)
    inits = [numpy_helper.from_array(rng.normal(0, 1, (1, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(grid, "grid"), numpy_helper.from_array(np.array([1, 1, 64], np.int64), "shape"),
             numpy_helper.from_array(np.array([64], np.int64), "max_out"), numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
             numpy_helper.from_array(np.array([0.5], np.float32), "threshold")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["y"], ["s"]),
             helper.make_node("Reshape", ["s", "shape"], ["scores"]),
             helper.make_node("NonMaxSuppression", ["grid", "scores", "max_out", "iou", "threshold"], ["selected"]),
             helper.make_node("GatherND", ["scores", "selected"], ["det_scores"])]
    graph = helper.make_graph(nodes, "nms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, ["K"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_feed_of_another_size_counts_as_all_noise():
    reference = [{"d": np.ones(4, np.float32)}, {"d": np.ones(3, np.float32)}]
    same = output_sqnr_db(reference, reference)
    other = output_sqnr_db(reference, [{"d": np.ones(4, np.float32)}, {"d": np.ones(2, np.float32)}])
    assert same == math.inf
    # feed 1's 3 reference values and 2 output values are all noise: 10 log10(7 / (3 + 2))
    assert other == np.float64(10 * math.log10(7 / 5)).item()


def test_quantize_with_auto_calibration_takes_a_data_dependent_output_size(tmp_path, capsys):
    model = tmp_path / "nms.onnx"
    onnx.save(nms_model(), str(model))
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).normal(0, 1, (20, 1, 1, 8, 8)).astype(np.float32))
    code = main(["quantize", str(model), "-o", str(tmp_path / "q.onnx"), "--calibration-data", str(tmp_path / "calib.npz")])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    assert "det_scores" in out
