"""Model forms old or careless exporters write, which ONNX Runtime and TensorRT's parser take:
weights also listed as graph inputs with initializer defaults (IR 3: caffe2, keras2onnx, old
torch) and nodes stored out of topological order. The int8 quantizer ended in a traceback on both
("Required inputs (['conv_w', 'fc_w']) are missing from input feed"; onnx-ir's "In clone_graph"),
and so did the fp16 artifact of an unsorted graph: every int8/fp16 item of such a model errored."""

import contextlib
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.precision.fp16 import convert_to_fp16
from onnx2trt_check.protos import in_deployable_form, topologically_sorted
from onnx2trt_check.quant.pipeline import Int8Settings, quantize_for_tensorrt


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)  # each helper its own: the values must not depend on test order


def _weights_as_inputs(ir_version: int, opset: int) -> onnx.ModelProto:
    rng = _rng(1)
    weights = {"conv_w": rng.standard_normal((8, 3, 3, 3)) * 0.3, "conv_b": rng.standard_normal(8) * 0.1,
               "fc_w": rng.standard_normal((10, 8)) * 0.3, "fc_b": rng.standard_normal(10) * 0.1}
    inits = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()]
    nodes = [helper.make_node("Conv", ["data", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"), helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1, name="fc")]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])]
    inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "old", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def _unsorted_mlp() -> onnx.ModelProto:
    rng = _rng(2)
    w1 = numpy_helper.from_array((rng.standard_normal((16, 32)) * 0.3).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((32, 8)) * 0.3).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["hr", "w2"], ["y"], name="mm2"), helper.make_node("Relu", ["h"], ["hr"], name="relu"),
             helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1")]
    graph = helper.make_graph(nodes, "unsorted", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ort(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    """ONNX Runtime's output; only the real inputs are fed (weights keep their initializer values)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def _sqnr_db(want: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(want.astype(np.float64) ** 2) / np.sum((want.astype(np.float64) - got) ** 2)))


def _feeds(name: str, shape, count: int) -> list[dict]:
    rng = _rng(3)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize(("ir_version", "opset"), [(3, 9), (4, 11), (8, 17)])
def test_int8_of_a_model_listing_its_weights_as_inputs_uses_those_weights(ir_version, opset):
    model = _weights_as_inputs(ir_version, opset)
    feeds = _feeds("data", (1, 3, 16, 16), 16)
    with contextlib.redirect_stderr(io.StringIO()):
        quantized = quantize_for_tensorrt(model, feeds, Int8Settings(method="max")).model
    onnx.checker.check_model(quantized)
    assert [v.name for v in quantized.graph.input] == ["data"]
    for feed in feeds[:4]:  # the int8 model computes the model's own weights, not other ones
        want, got = _ort(model, feed), _ort(quantized, feed)
        assert _sqnr_db(want, got) > 15  # int8 of these random weights: about 20 dB; other weights: below 0 dB
    assert len(model.graph.input) == 5  # the user's model is not modified


def test_fp16_artifact_of_a_model_listing_its_weights_as_inputs_keeps_its_weights():
    model = _weights_as_inputs(3, 9)
    feed = _feeds("data", (1, 3, 16, 16), 1)[0]
    artifact = convert_to_fp16(model, [feed]).model
    assert [v.name for v in artifact.graph.input] == ["data"]
    want = _ort(model, feed)
    assert np.abs(_ort(artifact, feed) - want).max() < 0.01 * np.abs(want).max()


def test_int8_and_fp16_of_a_graph_with_unsorted_nodes():
    model = _unsorted_mlp()
    assert not topologically_sorted(model.graph)
    feeds = _feeds("x", (2, 16), 16)
    with contextlib.redirect_stderr(io.StringIO()):
        quantized = quantize_for_tensorrt(model, feeds, Int8Settings(method="max")).model
    artifact = convert_to_fp16(model, feeds).model
    want = _ort(model, feeds[0])
    assert _sqnr_db(want, _ort(quantized, feeds[0])) > 15  # int8 of these random weights: about 20 dB; other weights: below 0 dB
    assert np.abs(_ort(artifact, feeds[0]) - want).max() < 0.01 * np.abs(want).max()
    assert not topologically_sorted(model.graph)  # not modified


def test_deployable_form_is_the_model_itself_when_nothing_is_to_change():
    model = _unsorted_mlp()
    model.graph.node.reverse()
    assert topologically_sorted(model.graph) and in_deployable_form(model) is model
    old = in_deployable_form(_weights_as_inputs(3, 9))
    assert old.ir_version == 4 and [v.name for v in old.graph.input] == ["data"] and len(old.graph.initializer) == 4


def test_layerwise_bisect_of_a_graph_with_unsorted_nodes_compares_every_tensor():
    """onnx's shape inference types nothing of an unsorted graph: the untyped h and hr were left out,
    and bisect named mm2 an error source "with exact inputs" while its input already carried the
    int8 error of mm1."""
    from onnx2trt_check.bisection.layerwise import layerwise_compare

    model = _unsorted_mlp()
    feeds = _feeds("x", (2, 16), 16)
    with contextlib.redirect_stderr(io.StringIO()):
        quantized = quantize_for_tensorrt(model, feeds, Int8Settings(method="max")).model
    report = layerwise_compare(model, quantized, feeds[:4])
    assert {row.tensor for row in report.tensors} >= {"h", "hr", "y"}
    assert [source.node for source in report.sources] == ["mm1"]


def test_transforms_of_a_graph_with_unsorted_nodes_run_on_it_sorted():
    """onnxsim refuses an unsorted graph ("Nodes in a graph must be topologically sorted"): simplify
    and the pipeline failed, and `optimize` wrote nothing, for a model ORT and TensorRT take."""
    from onnx2trt_check.transforms.run import TransformSettings, run_transforms

    model = _unsorted_mlp()
    result = run_transforms(model, _feeds("x", (2, 16), 4), TransformSettings(), names=["simplify", "optimize"])
    assert result.passed, [step.error for step in result.steps]
    assert topologically_sorted(result.model.graph) and not topologically_sorted(model.graph)
