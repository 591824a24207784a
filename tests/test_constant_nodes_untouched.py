"""A ModelProto handed to the API is never changed, also where its constants are Constant nodes: the
IR of a proto wraps the proto's own tensors, and onnx-ir's get_const_tensor names a Constant's tensor
after its output (api.optimize(proto, passes=["fuse_input_normalization"]) named the caller's mean
and std tensors)."""

import numpy as np
import onnx
import pytest

from onnx2trt_check import api
from onnx2trt_check.transforms.pipeline import TRANSFORMS


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    tensor = onnx.numpy_helper.from_array(array.astype(np.float32))
    tensor.ClearField("name")  # as exporters write a Constant's value: nameless
    return onnx.helper.make_node("Constant", [], [name], value=tensor)


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [
        _constant("mean", np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)),
        _constant("std", np.array([0.2, 0.25, 0.3]).reshape(1, 3, 1, 1)),
        _constant("w", rng.normal(size=(4, 3, 3, 3))),
        _constant("b", rng.normal(size=4)),
        *[_constant(n, v) for n, v in [("g", rng.uniform(0.5, 2, 4)), ("beta", rng.normal(size=4)),
                                        ("mu", rng.normal(size=4)), ("var", rng.uniform(0.5, 2, 4))]],
        _constant("w2", rng.normal(size=(2, 4, 1, 1))),
        onnx.helper.make_node("Sub", ["x", "mean"], ["centred"]),
        onnx.helper.make_node("Div", ["centred", "std"], ["normal"]),
        onnx.helper.make_node("Conv", ["normal", "w", "b"], ["conv"]),
        onnx.helper.make_node("BatchNormalization", ["conv", "g", "beta", "mu", "var"], ["bn"]),
        onnx.helper.make_node("Relu", ["bn"], ["relu"]),
        onnx.helper.make_node("Conv", ["relu", "w2"], ["logits"]),
        onnx.helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    graph = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                                   [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 2, 6, 6])])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("name", [entry.name for entry in TRANSFORMS])
def test_each_transform_leaves_the_caller_s_proto_as_it_was(name):
    model = _model()
    before = model.SerializeToString()
    api.optimize(model, passes=[name])
    assert model.SerializeToString() == before


def test_quantize_leaves_the_caller_s_proto_as_it_was(tmp_path):
    model = _model()
    before = model.SerializeToString()
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, x=np.random.default_rng(1).uniform(0, 1, (16, 1, 3, 8, 8)).astype(np.float32))
    api.quantize(model, calibration_data=calibration)
    assert model.SerializeToString() == before
