"""Q/DQ validator + optimizer on a QDQ ResNet-50-sized model, against onnx.load + onnx.save of it.

Two QDQ models of resnet50_like(size=64): onnxruntime's quantize_static (QDQ format, per-channel
int8 weights, symmetric int8 activations, float bias, two random calibration feeds), and this
project's quantize_model (max calibration: the method sets the scales, not the Q/DQ layout). The
target: validating plus optimizing takes under 2x the time of loading and saving that model.

What is timed is the pipeline as the qdq family and `onnx2trt-check qdq optimize` run it: one
onnx-ir conversion shared by validate_qdq and optimize_qdq (no feeds; the result serialized back to
an onnx.ModelProto). This machine is shared, so the two timings alternate within each repeat (both
see the same load) and the best of REPEATS is compared; the median of the per-repeat ratios is
printed beside it.

Run: /tmp/venv/bin/python benchmarks/bench_qdq.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnx_ir as ir
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

sys.path.insert(0, os.path.dirname(__file__))
from synthetic import resnet50_like  # noqa: E402

import onnx2trt_check.targets  # noqa: E402,F401  (imported before quant.quantize: see the report on import order)
from onnx2trt_check.quant.float_counterpart import float_counterpart  # noqa: E402
from onnx2trt_check.quant.qdq_optimize import optimize_qdq  # noqa: E402
from onnx2trt_check.quant.qdq_rules import validate_qdq  # noqa: E402
from onnx2trt_check.quant.quantize import quantize_model  # noqa: E402

SIZE = 64
REPEATS = 9


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: list[dict]) -> None:
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def calibration_feeds(count: int = 2) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)} for _ in range(count)]


def static_model(directory: str) -> str:
    """quantize_static QDQ of resnet50_like(SIZE), symmetric int8 with float bias (TensorRT style)."""
    float_path, qdq_path = os.path.join(directory, "float.onnx"), os.path.join(directory, "static.onnx")
    onnx.save(resnet50_like(SIZE), float_path)
    quantize_static(
        float_path, qdq_path, _Feeds(calibration_feeds()), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    return qdq_path


def our_model(directory: str) -> str:
    path = os.path.join(directory, "ours.onnx")
    onnx.save(quantize_model(resnet50_like(SIZE), calibration_feeds(), method="max").model, path)
    return path


def validate_and_optimize(model: onnx.ModelProto):
    """The family's pipeline: one conversion, validated, then optimized in place."""
    ir_model = ir.from_proto(model)
    findings = validate_qdq(model, ir_model=ir_model)
    return findings, optimize_qdq(model, ir_model=ir_model)


def alternating_times(path: str, model: onnx.ModelProto, copy_path: str) -> tuple[list[float], list[float]]:
    """(load+save seconds, validate+optimize seconds), one of each per repeat, alternating."""
    io_times, work_times = [], []
    for _ in range(REPEATS):
        io_times.append(_seconds(lambda: onnx.save(onnx.load(path), copy_path)))
        work_times.append(_seconds(lambda: validate_and_optimize(model)))
    return io_times, work_times


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def best_time(function, repeats: int = REPEATS) -> float:
    return min(_seconds(function) for _ in range(repeats))


def measure(label: str, path: str, directory: str) -> float:
    """Print the figures of one QDQ model; return the ratio of best times."""
    model = onnx.load(path)
    io_times, work_times = alternating_times(path, model, os.path.join(directory, "copy.onnx"))
    findings, result = validate_and_optimize(model)
    after = validate_qdq(result.model)
    ratio = min(work_times) / min(io_times)
    median_ratio = statistics.median(w / i for w, i in zip(work_times, io_times))
    print(f"{label}: {len(model.graph.node)} nodes, {os.path.getsize(path) / 1e6:.1f} MB")
    print(f"  onnx.load + onnx.save             {min(io_times) * 1000:8.1f} ms (best of {REPEATS})")
    print(f"  validate + optimize (shared IR)   {min(work_times) * 1000:8.1f} ms  ratio {ratio:.2f}x "
          f"(median of per-repeat ratios {median_ratio:.2f}x; target < 2x)")
    print(f"    validate_qdq alone              {best_time(lambda: validate_qdq(model)) * 1000:8.1f} ms  "
          f"({len(findings)} findings: {_rule_counts(findings)})")
    print(f"    optimize_qdq alone (no feeds)   {best_time(lambda: optimize_qdq(model)) * 1000:8.1f} ms  "
          f"({len(result.report.matches)} rewrites: {_rewrite_counts(result)})")
    print(f"  findings after optimize: {len(after)} ({_rule_counts(after)})")
    print(f"  float_counterpart                 {best_time(lambda: float_counterpart(model), 3) * 1000:8.1f} ms  (not part of the ratio)")
    return ratio


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        ratios = {"quantize_static": measure("quantize_static QDQ of resnet50_like(64)", static_model(directory), directory)}
        ratios["quantize_model"] = measure("quantize_model (ours) QDQ of resnet50_like(64)", our_model(directory), directory)
    verdict = "met" if max(ratios.values()) < 2 else "NOT met"
    print("goal validate + optimize < 2x load + save: " + verdict + " (" + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + ")")


def _rule_counts(findings) -> str:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    return ", ".join(f"{rule} x{n}" for rule, n in counts.items()) or "none"


def _rewrite_counts(result) -> str:
    return ", ".join(f"{name} x{fig['sites']}" for name, fig in result.report.figures.items() if isinstance(fig, dict)) or "none"


if __name__ == "__main__":
    main()
