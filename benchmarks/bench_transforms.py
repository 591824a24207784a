"""Time of the graph-transform pipeline (onnxsim excluded) beside onnx.load + onnx.save, and how it
grows with the graph.

1. A ResNet-50 layout with a BatchNormalization after every Conv (benchmarks/synthetic.py,
   about 100 MB of fp32 weights): the transforms alone (every registered pass but "simplify",
   applied in order, per-transform times) and `run_pipeline` (the same passes, each modifying step
   checked by onnx.checker and verified in ONNX Runtime on one feed), each as a ratio to
   load+save measured in the same run. Goal: < 2x.
2. Linearity: chains of Conv-BN-Relu blocks and of RepVGG blocks, 2,000 blocks against 200.
   Goal: about 10x, not 100x. onnxoptimizer alone is quadratic in node count; `optimize` runs it in
   windows of 500 nodes (onnx2trt_check/transforms/windows.py), and the line says how many.
3. `optimize` in windows against onnxoptimizer on the whole graph (window=None), same passes, on
   the 2,000-block Conv-BN-Relu chain: time and nodes left by each.

Usage: python benchmarks/bench_transforms.py [--size 64] [--repeats 3] [--profile]
`--profile` prints cProfile's top functions of the pipeline on the large cases.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.transforms.pipeline import run_pipeline
from onnx2trt_check.transforms.registry import get_transform, transform_names
from onnx2trt_check.transforms.simplify import OPTIMIZE_WINDOW_NODES, optimize

sys.path.insert(0, os.path.dirname(__file__))
from synthetic import resnet50_like

PASSES = [name for name in transform_names() if name != "simplify"]  # --without removes more


def timed(function, repeats: int) -> tuple[float, object]:
    """The best of `repeats` wall times (the least disturbed by other load on the machine)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def transforms_only(model: onnx.ModelProto) -> dict[str, float]:
    """Each pass applied to the previous one's result, unverified: seconds per transform."""
    seconds = {}
    for name in PASSES:
        entry = get_transform(name)
        start = time.perf_counter()
        model = entry.function(model, **entry.defaults).model
        seconds[name] = time.perf_counter() - start
    return seconds


def pipeline(model: onnx.ModelProto, feeds):
    return run_pipeline(model, feeds, passes=PASSES)


def random_feed(model: onnx.ModelProto) -> list[dict[str, np.ndarray]]:
    value = model.graph.input[0]
    shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return [{value.name: np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)}]


# --- generated chains -----------------------------------------------------------------------------


KINDS = ("convbn", "repvgg")


class _Chain:
    """Blocks over an 8-channel 8x8 map, weights small enough to keep activations O(1)."""

    def __init__(self, channels: int, seed: int) -> None:
        self.rng, self.channels = np.random.default_rng(seed), channels
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def _add(self, op_type: str, inputs: list[str], **attrs) -> str:
        name = f"{op_type.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def _const(self, name: str, array: np.ndarray) -> str:
        self.weights.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, kernel: int) -> str:
        c = self.channels
        w = self._const(f"w{len(self.nodes)}", self.rng.normal(0, 0.5 / np.sqrt(c * kernel * kernel), (c, c, kernel, kernel)))
        return self._add("Conv", [x, w], pads=[kernel // 2] * 4)

    def bn(self, x: str) -> str:
        c, tag = self.channels, f"bn{len(self.nodes)}"
        params = [self.rng.uniform(0.5, 1.5, c), self.rng.normal(0, 0.1, c), self.rng.normal(0, 0.1, c), self.rng.uniform(0.5, 1.5, c)]
        return self._add("BatchNormalization", [x] + [self._const(f"{tag}.{i}", p) for i, p in enumerate(params)])

    def convbn_block(self, x: str) -> str:
        return self._add("Relu", [self.bn(self.conv(x, 3))])

    def repvgg_block(self, x: str) -> str:
        branches = [self.bn(self.conv(x, 3)), self.bn(self.conv(x, 1)), self.bn(x)]
        return self._add("Relu", [self._add("Add", [self._add("Add", branches[:2]), branches[2]])])


def chain_model(blocks: int, *, kind: str, channels: int = 8, size: int = 8, seed: int = 0) -> onnx.ModelProto:
    """`blocks` Conv-BN-Relu (kind "convbn") or RepVGG (kind "repvgg") blocks in a row."""
    chain = _Chain(channels, seed)
    x = "x"
    for _ in range(blocks):
        x = chain.convbn_block(x) if kind == "convbn" else chain.repvgg_block(x)
    chain.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    shape = [1, channels, size, size]
    graph = helper.make_graph(chain.nodes, f"{kind}_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], chain.weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# --- the measurements ------------------------------------------------------------------------------


def bench_resnet(size: int, repeats: int, profile: bool) -> None:
    model = resnet50_like(size, batchnorm=True)
    weight_mb = sum(len(t.raw_data) for t in model.graph.initializer) / 1e6
    print(f"resnet50_like(size={size}, batchnorm=True): {len(model.graph.node)} nodes, {weight_mb:.1f} MB fp32 weights")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        save_s, _ = timed(lambda: onnx.save(model, path), repeats)
        load_s, _ = timed(lambda: onnx.load(path), repeats)
    baseline = save_s + load_s
    print(f"  best of {repeats}: onnx.save {save_s:.3f} s + onnx.load {load_s:.3f} s = {baseline:.3f} s")
    per_pass = min((transforms_only(model) for _ in range(repeats)), key=lambda s: sum(s.values()))
    rewrite_s = sum(per_pass.values())
    print(f"  transforms only ({', '.join(PASSES)}): {rewrite_s:.3f} s = {rewrite_s / baseline:.2f}x load+save (goal < 2x)")
    print("    " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in per_pass.items()))
    feeds = random_feed(model)
    pipeline_s, result = timed(lambda: pipeline(model, feeds), repeats)
    print(f"  run_pipeline, verified on 1 feed: {pipeline_s:.3f} s = {pipeline_s / baseline:.2f}x load+save "
          f"({'passed' if result.passed else 'FAILED at ' + result.failed_step}, "
          f"{len(model.graph.node)} -> {len(result.model.graph.node)} nodes)")
    if profile:
        print_profile(lambda: pipeline(model, feeds))


def bench_linearity(small: int, large: int, repeats: int, profile: bool, *, kinds=KINDS) -> None:
    for kind in kinds:
        times = {}
        for blocks in (small, large):
            model = chain_model(blocks, kind=kind)
            rewrite_s, _ = timed(lambda m=model: transforms_only(m), repeats)
            pipeline_s, result = timed(lambda m=model: pipeline(m, random_feed(m)), repeats)
            times[blocks] = (rewrite_s, pipeline_s)
            print(f"  {kind} x{blocks}: {len(model.graph.node)} nodes, transforms only {rewrite_s:.3f} s, run_pipeline "
                  f"{pipeline_s:.3f} s ({'passed' if result.passed else 'FAILED at ' + result.failed_step}, "
                  f"-> {len(result.model.graph.node)} nodes{_windows(result)})")
        (small_rewrite, small_pipe), (large_rewrite, large_pipe) = times[small], times[large]
        print(f"  {kind}: {large} vs {small} blocks: transforms only {large_rewrite / small_rewrite:.1f}x, "
              f"run_pipeline {large_pipe / small_pipe:.1f}x (goal ~{large / small:.0f}x, not {(large / small) ** 2:.0f}x)")
        if profile:
            large_model = chain_model(large, kind=kind)
            print_profile(lambda m=large_model: pipeline(m, random_feed(m)))


def bench_windows(blocks: int) -> None:
    model = chain_model(blocks, kind="convbn")
    passes = get_transform("optimize").defaults["passes"]
    figures = {}
    for label, window in (("whole graph", None), ("windows of 500", OPTIMIZE_WINDOW_NODES)):
        seconds, result = timed(lambda w=window: optimize(model, passes=passes, window=w), 1)
        figures[label] = seconds
        print(f"  onnxoptimizer, {label}: {seconds:.3f} s, {len(model.graph.node)} -> {len(result.model.graph.node)} nodes")
    print(f"  windows / whole graph: {figures['windows of 500'] / figures['whole graph']:.2f}x")


def _windows(result) -> str:
    """How the optimize step ran: onnxoptimizer window by window above 500 nodes (windows.py)."""
    step = next((step for step in result.steps if step.name == "optimize" and step.report), None)
    return f", optimize in {step.report.figures['windows']} windows" if step and step.report.figures.get("windows") else ""


def print_profile(function, top: int = 15) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(function)
    print(f"  cProfile, top {top} by cumulative time:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="ResNet input height and width (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    parser.add_argument("--small", type=int, default=200, help="blocks of the small chain (default 200)")
    parser.add_argument("--large", type=int, default=2000, help="blocks of the large chain (default 2000)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of the large cases")
    parser.add_argument("--without", action="append", default=[], metavar="NAME",
                        help="also leave out this transform (repeatable), e.g. optimize")
    parser.add_argument("--kind", action="append", choices=KINDS, help="chain kinds to time. Defaults to both")
    args = parser.parse_args()
    PASSES[:] = [name for name in PASSES if name not in args.without]
    bench_resnet(args.size, args.repeats, args.profile)
    print(f"linearity ({', '.join(PASSES)}), best of {args.repeats}:")
    bench_linearity(args.small, args.large, args.repeats, args.profile, kinds=args.kind or KINDS)
    print(f"optimize on convbn x{args.large}, one run each:")
    bench_windows(args.large)


if __name__ == "__main__":
    main()
