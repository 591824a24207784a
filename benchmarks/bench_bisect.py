"""Bisect benchmark: localization rate over planted faults, model runs of the searches, and the time
of layerwise_compare on a ResNet-50-sized model beside onnxruntime's qdq_loss_debug doing the same
layerwise job (expose every tensor, run both models, per-tensor SQNR), measured in the same run.

Run: /tmp/venv/bin/python benchmarks/bench_bisect.py
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

import bisect_models as bm  # noqa: E402
from synthetic import resnet50_like  # noqa: E402

from onnx2trt_check.bisection.layerwise import layerwise_compare  # noqa: E402
from onnx2trt_check.bisection.sensitivity import fp16_emulation, search_fallback  # noqa: E402
from onnx2trt_check.precision.fp16 import convert_to_fp16  # noqa: E402

FEEDS = bm.feeds()


def planted(rng: np.random.Generator, index: int):
    """(kind, reference, target, fault node name) for the index-th planted model."""
    depth, residual = int(rng.integers(5, 201)), bool(rng.integers(2))
    kind = ("weights", "fp16-overflow", "qdq-scale")[index % 3]
    if kind == "weights":
        fault = int(rng.choice(bm.weighted_nodes(depth, residual=residual)))
        reference, target = bm.wrong_weights(depth, fault, residual=residual)
    elif kind == "fp16-overflow":
        fault = int(rng.choice(bm.overflow_positions(depth)))
        reference = bm.fp16_overflow(depth, fault, residual=residual)
        target = fp16_emulation(reference)
    else:
        fault = int(rng.choice([i for i in range(depth) if bm.BLOCK[i % 4] in ("Conv", "MatMul")]))
        reference, target = bm.chain_model(depth, residual=residual), bm.qdq_model(depth, bad=fault, residual=residual)
    return kind, reference, target, bm.node_name(fault), depth


def localization(count: int = 100) -> None:
    rng = np.random.default_rng(0)
    hits: dict[str, list[bool]] = {}
    executions = set()
    for index in range(count):
        kind, reference, target, fault, depth = planted(rng, index)
        report = layerwise_compare(reference, target, FEEDS)
        named = report.first_divergent is not None and report.first_divergent.nodes == [fault]
        hits.setdefault(kind, []).append(named)
        executions.add(report.executions // len(FEEDS))
        if not named:
            print(f"  missed: {kind} depth {depth} fault {fault}: {report.first_divergent}")
    total = sum(sum(v) for v in hits.values())
    print(f"localization (first divergent tensor names the planted node): {total}/{count} = {total / count:.0%}")
    for kind, found in hits.items():
        print(f"  {kind:14s} {sum(found)}/{len(found)}")
    print(f"  layerwise model executions per feed: {sorted(executions)} (reference + target)")


def search_cost() -> None:
    print("fallback search on one fp16-overflow node (ddmin from every node, no ranking); found: the Conv and the MatMul")
    print("  reading its out-of-range output (the converter casts it down for a converted reader), less what the")
    print("  converter keeps fp32 on its own (weights beyond fp16):")
    print(f"  {'nodes':>6} {'ddmin runs':>10} {'log2(n)':>8} {'total runs':>10} {'found':>6}")
    for depth in (8, 16, 32, 64, 128, 200):
        fault = bm.overflow_positions(depth)[len(bm.overflow_positions(depth)) // 2]
        model = bm.fp16_overflow(depth, fault)
        result = search_fallback(model, FEEDS, fp16_emulation)
        on_its_own = {node.name for node in convert_to_fp16(model, block_ops=()).report.blocked}
        found = result.exclude == [n for n in (bm.node_name(fault), bm.node_name(fault + 1)) if n not in on_its_own]
        print(f"  {depth:>6} {result.runs['ddmin']:>10} {math.log2(depth):>8.1f} {sum(result.runs.values()):>10} {found!s:>6}")


def perturbed(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with one mid-network conv's weights scaled by 1.5 (a wrong export)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for index, tensor in enumerate(copy.graph.initializer):
        if tensor.name == "conv59.w":
            copy.graph.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.5, tensor.name))
    return copy


def ort_qdq_loss_debug(reference: onnx.ModelProto, target: onnx.ModelProto, feeds: list) -> dict:
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        modify_model_output_intermediate_tensors,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        activations = []
        for name, model in (("ref", reference), ("tgt", target)):
            onnx.save(model, f"{tmp}/{name}.onnx")
            modify_model_output_intermediate_tensors(f"{tmp}/{name}.onnx", f"{tmp}/{name}_aug.onnx")
            activations.append(collect_activations(f"{tmp}/{name}_aug.onnx", Reader()))
    ref, tgt = activations
    # A float target has no Q/DQ suffixes to pair, so the same-name pairs are built directly.
    matching = {name: {"pre_qdq": tgt[name], "post_qdq": tgt[name], "float": ref[name]} for name in tgt if name in ref}
    return compute_activation_error(matching)


def timed(function, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def resnet_timing() -> None:
    reference = resnet50_like(64)
    target = perturbed(reference)
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 3, 64, 64)).astype(np.float32)} for i in range(2)]
    ours, report = timed(lambda: layerwise_compare(reference, target, feeds))
    theirs, errors = timed(lambda: ort_qdq_loss_debug(reference, target, feeds))
    print(f"layerwise on resnet50_like(size=64) vs a copy with conv59's weights x1.5, {len(feeds)} feeds (median of 3):")
    first = report.first_divergent
    print(f"  onnx2trt_check layerwise_compare: {ours:.3f} s, {len(report.tensors)} tensors, first divergent "
          f"{first.tensor if first else None} at {first.nodes if first else None} ({first.sqnr_db if first else 0:.1f} dB), "
          f"top amplifier {report.amplification[0].node}")
    print(f"  onnxruntime qdq_loss_debug:       {theirs:.3f} s, {len(errors)} tensors (per-tensor SQNR only), "
          f"SQNR of conv59: {errors['conv59']['xmodel_err']:.1f} dB")


if __name__ == "__main__":
    localization()
    search_cost()
    resnet_timing()
