"""Time of the fp16 conversion of a ResNet-50-sized model beside onnx.load + onnx.save of it.

Builds a ResNet-50 layout (bottleneck stages 3/4/6/3, Conv/Relu/Add, BatchNorm folded away) with
random weights, about 100 MB of fp32, and prints the times of `convert_to_fp16` without feeds and
with one feed (the data-driven pass), each as a ratio to load+save measured in the same run.
Goal: conversion < 2x load+save. Usage: python benchmarks/bench_fp16_convert.py [--size 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.precision import convert_to_fp16

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, first stride)


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int = 1, gain: float = 1.0) -> str:
        name = f"conv{len(self.nodes)}"
        fan_in = cin * kernel * kernel  # He initialisation keeps activations O(1) through the stack
        weight = self.rng.normal(0, gain * np.sqrt(2 / fan_in), (cout, cin, kernel, kernel)).astype(np.float32)
        self.weights += [numpy_helper.from_array(weight, name + ".w"), numpy_helper.from_array(np.zeros(cout, np.float32), name + ".b")]
        pad = kernel // 2
        self.nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [name], name=name, strides=[stride] * 2, pads=[pad] * 4))
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


def resnet50_like(size: int, seed: int = 0) -> onnx.ModelProto:
    build = _Builder(seed)
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


def timed(function, repeats: int) -> tuple[float, object]:
    """The best of `repeats` wall times (the least disturbed by other load on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    args = parser.parse_args()
    model = resnet50_like(args.size)
    weight_mb = sum(len(t.raw_data) for t in model.graph.initializer) / 1e6
    print(f"model: {len(model.graph.node)} nodes, {weight_mb:.1f} MB fp32 weights, input 1x3x{args.size}x{args.size}")
    feed = {"x": np.random.default_rng(1).normal(0, 1, (1, 3, args.size, args.size)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        save_s, _ = timed(lambda: onnx.save(model, path), args.repeats)
        load_s, model = timed(lambda: onnx.load(path), args.repeats)
    baseline = save_s + load_s
    print(f"best of {args.repeats}: onnx.save {save_s:.3f} s + onnx.load {load_s:.3f} s = {baseline:.3f} s")
    for label, feeds in (("fp16 conversion, no feeds", None), ("fp16 conversion, 1 feed (data-driven)", [feed])):
        seconds, result = timed(lambda: convert_to_fp16(model, feeds), args.repeats)
        fp16_mb = sum(len(t.raw_data) for t in result.model.graph.initializer) / 1e6
        print(
            f"{label}: {seconds:.3f} s = {seconds / baseline:.2f}x load+save "
            f"(blocked {len(result.report.blocked)}, fp16 weights {fp16_mb:.1f} MB)"
        )


if __name__ == "__main__":
    main()
