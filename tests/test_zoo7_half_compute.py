"""zoo7: a model with float32 inputs/outputs that computes in float16 inside (onnxconverter-common's
convert_float_to_float16(keep_io_types=True); ModelOpt's int8 mode, whose high-precision dtype is
fp16) failed transform[simplify]/[optimize] and target[ort] at max abs 6.7e-4: judged with float32's
tolerance, while any rewrite or fused kernel re-rounds its float16 values. Its tolerance now comes
from float16's eps; a wrong rewrite still fails."""

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from onnx2trt_check.transforms.verify import check_equivalence, half_compute_dtype

RNG = np.random.default_rng(3)
X = RNG.standard_normal((8, 256)).astype(np.float32)
W = RNG.standard_normal((256, 16)).astype(np.float16)


def _model(nodes, inits):
    graph = h.make_graph(
        [h.make_node("Cast", ["x"], ["x16"], to=T.FLOAT16), *nodes, h.make_node("Cast", ["y16"], ["y"], to=T.FLOAT)], "g",
        [h.make_tensor_value_info("x", T.FLOAT, [8, 256])], [h.make_tensor_value_info("y", T.FLOAT, [8, 16])], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def whole(weight=W):
    return _model([h.make_node("MatMul", ["x16", "w"], ["y16"])], [nh.from_array(weight, "w")])


def through_an_offset():
    """(x @ W + 256) - 256: the same function in exact arithmetic, re-rounded in float16 (its step at
    256 is 0.25), as a rewrite that moves a bias across a float16 sum is."""
    nodes = [h.make_node("MatMul", ["x16", "w"], ["m"]), h.make_node("Cast", ["m"], ["m32"], to=T.FLOAT),
             h.make_node("Add", ["m32", "c"], ["up32"]), h.make_node("Cast", ["up32"], ["up"], to=T.FLOAT16),
             h.make_node("Cast", ["up"], ["back32"], to=T.FLOAT), h.make_node("Sub", ["back32", "c"], ["down"]),
             h.make_node("Cast", ["down"], ["y16"], to=T.FLOAT16)]
    return _model(nodes, [nh.from_array(W, "w"), nh.from_array(np.array(256, np.float32), "c")])


def test_a_half_compute_model_is_recognised():
    assert half_compute_dtype(whole()) is np.float16
    assert half_compute_dtype(onnx.helper.make_model(h.make_graph([], "g", [], []))) is None


def test_a_float16_rerounding_is_equivalent():
    result = check_equivalence(whole(), through_an_offset(), {"x": X})
    assert result.passed, result.summary


def test_a_wrong_weight_still_fails():
    result = check_equivalence(whole(), whole(W * np.float16(1.1)), {"x": X})
    assert not result.passed, result.summary


def mixed(weight=None):
    """An fp32 model (a 256x16 fp32 MatMul) with one small fp16 region behind it (a 16-element Mul)."""
    weight = W.astype(np.float32) if weight is None else weight
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Cast", ["m"], ["m16"], to=T.FLOAT16),
             h.make_node("Mul", ["m16", "s"], ["p16"]), h.make_node("Cast", ["p16"], ["y"], to=T.FLOAT)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [8, 256])], [h.make_tensor_value_info("y", T.FLOAT, [8, 16])],
                         [nh.from_array(weight, "w"), nh.from_array(np.full(16, 0.5, np.float16), "s")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def autocast():
    """fp32 weights cast to fp16 on the fly (a torch autocast export): it computes in half."""
    nodes = [h.make_node("Cast", ["w"], ["w16"], to=T.FLOAT16), h.make_node("MatMul", ["x16", "w16"], ["y16"])]
    return _model(nodes, [nh.from_array(W.astype(np.float32), "w")])


def test_half_compute_is_decided_by_the_weights():
    assert half_compute_dtype(autocast()) is np.float16
    assert half_compute_dtype(mixed()) is None


def test_a_small_fp16_region_does_not_loosen_the_fp32_comparison():
    # A 0.5% weight error: float16's tolerance (3%) would pass it; the model computes in fp32 almost
    # everywhere, so fp32's must judge it.
    result = check_equivalence(mixed(), mixed(W.astype(np.float32) * np.float32(1.005)), {"x": X})
    assert not result.passed, result.summary
