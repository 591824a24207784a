"""Found on foreign models (zoo3): the deployment pattern of a uint8 image input with the
preprocessing in the graph, `Cast(x) / 255 - mean) / std -> Conv`, was reported as "no input
normalization ... in the model": the normalization chain starts at a Cast of the input, not at the
input. fuse_input_normalization now also takes a chain that starts at a Cast of a graph input to a
floating type (the folded Convs read the Cast's output), verified here on uint8 images over the full
0..255 range against the original graph, padded Conv (border correction) included."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.fuse_input_normalization import fuse_input_normalization
from onnx2trt_check.transforms.verify import check_equivalence


def uint8_preprocessed(*, pads: int, source_type=TensorProto.UINT8, cast_to=TensorProto.FLOAT) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    weights = [numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
               numpy_helper.from_array(np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1), "mean"),
               numpy_helper.from_array(np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1), "std"),
               numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b")]
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=cast_to),
             helper.make_node("Div", ["xf", "scale"], ["unit"]),
             helper.make_node("Sub", ["unit", "mean"], ["centered"]),
             helper.make_node("Div", ["centered", "std"], ["normalized"]),
             helper.make_node("Conv", ["normalized", "w", "b"], ["y"], pads=[pads] * 4)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", source_type, [2, 3, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 7 + 2 * pads - 2, 7 + 2 * pads - 2])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("pads", [0, 1])
def test_a_chain_after_a_cast_of_a_uint8_input_folds_into_the_conv(pads):
    model = uint8_preprocessed(pads=pads)
    result = fuse_input_normalization(model)
    assert result.modified, result.report.skips
    ops = [n.op_type for n in result.model.graph.node]
    assert ops == ["Cast", "Conv"] + (["Add"] if pads else []), ops
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.integers(0, 256, (2, 3, 7, 7)).astype(np.uint8)} for _ in range(3)]
    feeds.append({"x": np.full((2, 3, 7, 7), 255, np.uint8)})
    equivalence = check_equivalence(model, result.model, feeds)
    assert equivalence.passed, equivalence.summary
    # independent of the library's comparison: the normalization written out in numpy
    x = feeds[0]["x"].astype(np.float32)
    normalized = ((x / 255 - np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)) / np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)).astype(np.float32)
    expected = run_model(_conv_only(model, pads), [{"n": normalized}])[0]["y"]
    np.testing.assert_allclose(run_model(result.model, feeds[:1])[0]["y"], expected, rtol=1e-4, atol=1e-3)


def _conv_only(model: onnx.ModelProto, pads: int) -> onnx.ModelProto:
    weights = [t for t in model.graph.initializer if t.name in ("w", "b")]
    graph = helper.make_graph([helper.make_node("Conv", ["n", "w", "b"], ["y"], pads=[pads] * 4)], "c",
                              [helper.make_tensor_value_info("n", TensorProto.FLOAT, [2, 3, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
