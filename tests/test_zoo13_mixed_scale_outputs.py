"""zoo13: a transform step's default tolerance was sqrt(eps) x the output's largest magnitude
(transforms/verify.py), on the premise that every element of an output is accumulated on that
scale. A detector's decoded output breaks it: YOLOv8's [1, 4 + classes, anchors] (YOLOv5's
[1, anchors, 5 + classes] alike) concatenates box coordinates in pixels (up to 640) with class
probabilities in [0, 1], and the probabilities were then allowed to move by 3.45e-4 x 640 = 0.22.
A fold that is wrong in the class branch alone (a BN folded with a bias 0.2 off, which moves the
class scores by 0.05, max rel 0.16) was verified "equivalent" and `optimize` wrote it. Each element
is now judged on its smallest slice scale (verify.element_scales).

The int8 floors had the same blind spot: taken over the whole output, the pixel boxes carried them,
and class scores at 18 dB (below int8's 20 dB floor) passed `derived::parity` at 74 dB; a one-class
detector's scores at 4 dB passed at 83 dB. Per-slice SQNR is no fix: a column of scores near zero (a
class never present) has almost no signal, and its quantization noise would fail a correct model.
The floor now also holds for each part the output's Concat joins (output_layout: boxes, scores),
and over the elements of a typical scale (sqnr.typical_elements_sqnr: the boxes left out where
they are a minority of the output, whatever the graph)"""


import numpy as np
import onnx
import onnx.parser
import pytest
from planted_transforms import plant_in_transform

from onnx2trt_check import api

# cls = Sigmoid(BN(Conv(x))) in [0, 1]; box = 640 * Sigmoid(Conv(x)) in pixels; one [N, 4, 16] output.
DETECTOR = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,3,4,4] x) => (float[N,4,16] det)
  <float[2,3,1,1] wc = {0.5, -1.0, 0.25, 2.0, 0.3, -0.6}, float[2] s = {1.5, 0.5}, float[2] b = {0.1, -0.2},
   float[2] m = {0.3, -0.1}, float[2] v = {2.0, 0.5}, float[2,3,1,1] wb = {0.2, 0.4, -0.3, 0.1, -0.5, 0.6},
   float px = {640.0}, int64[3] shape = {0, 2, 16}> {
  c = Conv(x, wc)
  n = BatchNormalization(c, s, b, m, v)
  cls = Sigmoid(n)
  cb = Conv(x, wb)
  sb = Sigmoid(cb)
  box = Mul(sb, px)
  clsf = Reshape(cls, shape)
  boxf = Reshape(box, shape)
  det = Concat<axis = 1>(boxf, clsf)
}"""


def _plant_a_bias_error(monkeypatch):
    """fold_conv_bn as registered, but its folded Conv's bias 0.2 off: the class logits move by 0.2."""
    def wrong(model):
        for node in model.graph.node:
            if node.op_type == "Conv" and len(node.input) == 3:
                bias = next(t for t in model.graph.initializer if t.name == node.input[2])
                values = onnx.numpy_helper.to_array(bias) + np.float32(0.2)
                bias.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), bias.name))
        return model

    plant_in_transform(monkeypatch, "fold_conv_bn", wrong)


def test_a_fold_wrong_in_the_class_scores_of_a_detector_output_is_not_written(tmp_path, monkeypatch):
    model = tmp_path / "det.onnx"
    onnx.save(onnx.parser.parse_model(DETECTOR), model)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (4, 2, 3, 4, 4)).astype(np.float32))
    _plant_a_bias_error(monkeypatch)
    result = api.optimize(str(model), output=tmp_path / "o.onnx", inputs=str(data), passes=["fold_conv_bn"])
    assert not result.passed and result.written is None, [step.summary() for step in result.pipeline.steps]


# The same output, its class logits through a coarse Q/DQ (scale 1: logits rounded to integers).
DETECTOR_Q = DETECTOR.replace("  cls = Sigmoid(n)", "  nq = QuantizeLinear(n, qs, qz)\n  nd = DequantizeLinear(nq, qs, qz)\n  cls = Sigmoid(nd)").replace(
    "int64[3] shape = {0, 2, 16}>", "int64[3] shape = {0, 2, 16}, float qs = {1.0}, int8 qz = {0}>")


def test_class_scores_below_the_int8_floor_fail_parity_beside_pixel_boxes(tmp_path):
    model, original = tmp_path / "det_q.onnx", tmp_path / "det.onnx"
    onnx.save(onnx.parser.parse_model(DETECTOR_Q), model)
    onnx.save(onnx.parser.parse_model(DETECTOR), original)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (8, 2, 3, 4, 4)).astype(np.float32))
    result = api.check(str(model), pytest_args=[f"--reference-model={original}", f"--inputs={data}", "-k", "derived",
                                                "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == "failed", parity
    assert "SQNR of the part 'clsf' (positions 2-3 of axis 1" in parity["message"], parity["message"]


def _yolo_like(classes: int, logit_scale: float | None) -> onnx.ModelProto:
    """[N, 4 + classes, 16]: 4 rows of pixel boxes, then class scores, their logits through a Q/DQ of
    `logit_scale` (None: float)."""
    rng = np.random.default_rng(5)
    wc, wb = rng.normal(size=(classes, 3, 1, 1)), rng.normal(size=(4, 3, 1, 1))
    inits = [onnx.numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((wc, "wc"), (wb, "wb"), (np.array(640.0), "px"))]
    inits.append(onnx.numpy_helper.from_array(np.array([0, -1, 16], np.int64), "shape"))
    h = onnx.helper
    nodes, logits = [h.make_node("Conv", ["x", "wc"], ["c"])], "c"
    if logit_scale is not None:
        inits += [onnx.numpy_helper.from_array(np.array(logit_scale, np.float32), "qs"), onnx.numpy_helper.from_array(np.array(0, np.int8), "qz")]
        nodes += [h.make_node("QuantizeLinear", ["c", "qs", "qz"], ["cq"]), h.make_node("DequantizeLinear", ["cq", "qs", "qz"], ["cd"])]
        logits = "cd"
    nodes += [h.make_node("Sigmoid", [logits], ["cls"]), h.make_node("Conv", ["x", "wb"], ["b"]), h.make_node("Sigmoid", ["b"], ["sb"]),
              h.make_node("Mul", ["sb", "px"], ["box"]), h.make_node("Reshape", ["box", "shape"], ["boxf"]),
              h.make_node("Reshape", ["cls", "shape"], ["clsf"]), h.make_node("Concat", ["boxf", "clsf"], ["det"], axis=1)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 4, 4])],
                         [h.make_tensor_value_info("det", onnx.TensorProto.FLOAT, ["N", 4 + classes, 16])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("classes", "logit_scale", "outcome"), [(16, 1.0, "failed"), (16, 0.02, "passed"), (1, 1.0, "failed"), (1, 0.02, "passed")])
def test_class_scores_beside_box_rows_are_judged_on_their_own_scale(tmp_path, classes, logit_scale, outcome):
    """Class rows beside 4 box rows, one class (a person detector) or 16: logits rounded to integers
    fail the int8 floor, logits in steps of 0.02 pass."""
    model, original = tmp_path / "det_q.onnx", tmp_path / "det.onnx"
    onnx.save(_yolo_like(classes, logit_scale), model)
    onnx.save(_yolo_like(classes, None), original)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (8, 2, 3, 4, 4)).astype(np.float32))
    result = api.check(str(model), pytest_args=[f"--reference-model={original}", f"--inputs={data}", "-k", "derived and parity",
                                                "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == outcome, parity.get("message")
    assert outcome == "passed" or "SQNR of the part 'clsf' (positions 4-" in parity["message"], parity["message"]
