"""Time of the fp16 conversion of a ResNet-50-sized model beside onnx.load + onnx.save of it.

Builds a ResNet-50 layout (bottleneck stages 3/4/6/3, Conv/Relu/Add, BatchNorm folded away) with
random weights, about 100 MB of fp32, and prints the times of `convert_to_fp16` without feeds and
with one feed (the data-driven pass), each as a ratio to load+save measured in the same run.
Goal: conversion < 2x load+save. Usage: python benchmarks/bench_fp16_convert.py [--size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx

from onnx2trt_check.precision import convert_to_fp16

sys.path.insert(0, os.path.dirname(__file__))
from synthetic import resnet50_like  # noqa: E402


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
