"""Q/DQ validator + optimizer on a QDQ ResNet-50-sized model, against onnx.load + onnx.save of it.

The QDQ model is resnet50_like(size=64) quantized by onnxruntime's quantize_static (QDQ format,
per-channel int8 weights, int8 activations, two random calibration feeds). The target: validating
plus optimizing takes under 2x the time of loading and saving that model, measured in this run.

Run: /tmp/venv/bin/python benchmarks/bench_qdq.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

sys.path.insert(0, os.path.dirname(__file__))
from synthetic import resnet50_like  # noqa: E402

from onnx2trt_check.quant.float_counterpart import float_counterpart  # noqa: E402
from onnx2trt_check.quant.qdq_optimize import optimize_qdq  # noqa: E402
from onnx2trt_check.quant.qdq_rules import validate_qdq  # noqa: E402

SIZE = 64
REPEATS = 3


class _RandomFeeds(CalibrationDataReader):
    def __init__(self, count: int, size: int) -> None:
        rng = np.random.default_rng(0)
        self._feeds = iter([{"x": rng.standard_normal((1, 3, size, size)).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self._feeds, None)


def quantized_model(directory: str) -> str:
    """quantize_static QDQ of resnet50_like(SIZE), symmetric int8 with float bias (TensorRT style)."""
    float_path, qdq_path = os.path.join(directory, "float.onnx"), os.path.join(directory, "qdq.onnx")
    onnx.save(resnet50_like(SIZE), float_path)
    quantize_static(
        float_path, qdq_path, _RandomFeeds(2, SIZE), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    return qdq_path


def best_time(function, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = quantized_model(directory)
        copy_path = os.path.join(directory, "copy.onnx")
        model = onnx.load(path)
        io_time = best_time(lambda: onnx.save(onnx.load(path), copy_path))
        validate_time = best_time(lambda: validate_qdq(model))
        optimize_time = best_time(lambda: optimize_qdq(model))
        counterpart_time = best_time(lambda: float_counterpart(model))
        findings = validate_qdq(model)
        result = optimize_qdq(model)
        after = validate_qdq(result.model)
        size_mb = os.path.getsize(path) / 1e6
    nodes = len(model.graph.node)
    print(f"QDQ model: resnet50_like(size={SIZE}) via quantize_static, {nodes} nodes, {size_mb:.1f} MB")
    print(f"onnx.load + onnx.save         {io_time * 1000:8.1f} ms")
    print(f"validate_qdq                  {validate_time * 1000:8.1f} ms  ({len(findings)} findings: {_rule_counts(findings)})")
    print(f"optimize_qdq (no feeds)       {optimize_time * 1000:8.1f} ms  ({len(result.report.matches)} rewrites: {_rewrite_counts(result)})")
    print(f"validate + optimize           {(validate_time + optimize_time) * 1000:8.1f} ms  "
          f"ratio to load+save {(validate_time + optimize_time) / io_time:.2f}x (target < 2x)")
    print(f"float_counterpart             {counterpart_time * 1000:8.1f} ms  (not part of the ratio)")
    print(f"findings after optimize: {len(after)} ({_rule_counts(after)})")


def _rule_counts(findings) -> str:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    return ", ".join(f"{rule} x{n}" for rule, n in counts.items()) or "none"


def _rewrite_counts(result) -> str:
    return ", ".join(f"{name} x{fig['sites']}" for name, fig in result.report.figures.items() if isinstance(fig, dict)) or "none"


if __name__ == "__main__":
    main()
