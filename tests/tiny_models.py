"""Small ONNX models for the foundation's tests, written as ONNX text where that is shortest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def classifier(*, batch: str | int = "N", seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm: 10 class scores from a 3x8x8 image."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array((rng.normal(size=(10, 64)) * 0.1).astype(np.float32), "fw"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [batch, 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def parse(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)


def two_inputs() -> onnx.ModelProto:
    """An int64 and a bool input: shows generated data for non-float dtypes."""
    return parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (int64[2, 3] ids, bool[2, 3] mask, float[2, 3] x) => (float[2, 3] y) {
            f = Cast <to = 1> (ids)
            m = Cast <to = 1> (mask)
            s = Add(f, m)
            y = Add(s, x)
        }"""
    )


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def with_output_through(model: onnx.ModelProto, op_type: str, constants: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose first output passes through one more node, op_type(output, *constants)
    (a Reshape or Slice baked to the data's size, planted in a transform's result)."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    out = changed.graph.output[0].name
    for node in changed.graph.node:
        node.output[:] = [f"{out}_pre" if o == out else o for o in node.output]
    changed.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    changed.graph.node.append(helper.make_node(op_type, [f"{out}_pre", *constants], [out]))
    return changed


SAMPLE_MODELS = Path(__file__).resolve().parent.parent / "models"


def copy_sample(folder: Path, name: str, suffixes=(".onnx", ".npz")) -> None:
    """The sample model `name` and its files beside it (data, labels) copied into `folder`."""
    for suffix in suffixes:
        shutil.copy(SAMPLE_MODELS / f"{name}{suffix}", folder / f"{name}{suffix}")
