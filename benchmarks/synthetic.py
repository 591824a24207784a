"""Generated models for the benchmarks: sizes that matter (a ResNet-50 layout, about 100 MB of fp32
weights) without downloading any weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, first stride)


class _Builder:
    def __init__(self, seed: int, *, batchnorm: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.batchnorm = batchnorm
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int = 1, gain: float = 1.0) -> str:
        name = f"conv{len(self.nodes)}"
        fan_in = cin * kernel * kernel  # He initialisation keeps activations O(1) through the stack
        weight = self.rng.normal(0, gain * np.sqrt(2 / fan_in), (cout, cin, kernel, kernel)).astype(np.float32)
        self.weights += [numpy_helper.from_array(weight, name + ".w"), numpy_helper.from_array(np.zeros(cout, np.float32), name + ".b")]
        pad = kernel // 2
        self.nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [name], name=name, strides=[stride] * 2, pads=[pad] * 4))
        return self.bn(name, cout) if self.batchnorm else name

    def bn(self, x: str, channels: int) -> str:
        """An inference BatchNormalization with trained-looking statistics (drawn after the conv's
        weights, so a model without BN keeps its exact weights)."""
        name = f"bn{len(self.nodes)}"
        params = {"scale": self.rng.uniform(0.5, 1.5, channels), "bias": self.rng.normal(0, 0.1, channels),
                  "mean": self.rng.normal(0, 0.1, channels), "var": self.rng.uniform(0.5, 1.5, channels)}
        self.weights += [numpy_helper.from_array(v.astype(np.float32), f"{name}.{k}") for k, v in params.items()]
        self.nodes.append(helper.make_node("BatchNormalization", [x] + [f"{name}.{k}" for k in params], [name], name=name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        name = f"{op_type.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def bottleneck(self, x: str, cin: int, width: int, stride: int) -> str:
        h = self.op("Relu", [self.conv(x, cin, width, 1)])
        h = self.op("Relu", [self.conv(h, width, width, 3, stride)])
        h = self.conv(h, width, width * 4, 1, gain=0.2)  # small residual branch, as trained nets have
        skip = self.conv(x, cin, width * 4, 1, stride) if stride != 1 or cin != width * 4 else x
        return self.op("Relu", [self.op("Add", [h, skip])])


def resnet50_like(size: int, seed: int = 0, *, batchnorm: bool = False) -> onnx.ModelProto:
    """`batchnorm=True` puts a BatchNormalization after every Conv (as exported before folding).
    Defaults to False."""
    build = _Builder(seed, batchnorm=batchnorm)
    x = build.op("MaxPool", [build.op("Relu", [build.conv("x", 3, 64, 7, 2)])], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    cin = 64
    for width, blocks, stride in STAGES:
        for block in range(blocks):
            x = build.bottleneck(x, cin, width, stride if block == 0 else 1)
            cin = width * 4
    pooled = build.op("Flatten", [build.op("GlobalAveragePool", [x])])
    fc = build.rng.normal(0, 0.01, (1000, cin)).astype(np.float32)
    build.weights += [numpy_helper.from_array(fc, "fc.w"), numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b")]
    build.nodes.append(helper.make_node("Gemm", [pooled, "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        build.nodes, "resnet50_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        build.weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
