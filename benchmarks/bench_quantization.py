"""Int8 quality on every sample model: our quantizer's calibrators and configurations beside
onnxruntime.quantization.quantize_static, on the same calibration data and the same test data.

For each model: the task metric on its test split (top-1 accuracy, or the heatmap model's pixel
accuracy at 0.5; see models/manifest.json) and the SQNR of the int8 output against fp32. Every int8
model runs on ONNX Runtime CPU with all graph optimizations (its int8 kernels); these are ONNX Runtime
figures, not TensorRT ones.

    python benchmarks/bench_quantization.py [--models DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime import quantization as ortq

from onnx2trt_check.compare import sqnr_db
from onnx2trt_check.data import feeds_from_npz
from onnx2trt_check.model import load_model, resolve_input_specs
from onnx2trt_check.quant.pipeline import Int8Settings, quantize_for_tensorrt
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.fold_conv_bn import fold_conv_bn

MODELS = Path(__file__).resolve().parents[1] / "models"
OUR_CALIBRATORS = (("max", 99.99), ("percentile", 99.99), ("percentile", 99.999), ("entropy", 99.99), ("mse", 99.99))
ORT_CALIBRATORS = ("MinMax", "Entropy", "Percentile")
# The MobileNetV2-style model's per-tensor recovery study, with the calibrator named here.
RECOVERY_MODEL = "mobilenetv2_classifier"
RECOVERY_METHODS = (("max", 99.99), ("percentile", 99.99))
NOTE = (
    "Insertion differs by design: ours follows TensorRT's Q/DQ placement (inputs of Conv/Gemm/MatMul and the residual\n"
    "input of a Conv+Add), while quantize_static quantizes every op it has a QDQ rule for (also pooling, Add, Sigmoid...).\n"
    "ORT is given the BN-folded model, the same fold our pipeline starts with. ORT settings: QuantFormat.QDQ,\n"
    "per_channel=True, activations and weights int8 symmetric. 'cle(swap)' replaces ReLU6 by ReLU in the equalized\n"
    "pairs (a change of function, measured in the row 'fp32 with cle(swap)')."
)


@dataclasses.dataclass
class Sample:
    name: str
    task: str
    model: onnx.ModelProto
    calibration: list
    test: list
    labels: np.ndarray
    reference: list


def load_sample(folder: Path, name: str, entry: dict) -> Sample:
    model = load_model(folder / entry["file"]).proto
    specs = resolve_input_specs(model, {})
    data = entry["data"]
    test = feeds_from_npz(folder / data["inputs"], specs)
    return Sample(name, entry["task"], model, feeds_from_npz(folder / data["calibration"], specs), test,
                  np.load(folder / data["labels"]), run_model(model, test))


def task_metric(sample: Sample, outputs: list) -> float:
    """Top-1 accuracy against the labels, or pixel accuracy at 0.5 for the heatmap model."""
    scores = np.concatenate([next(iter(o.values())) for o in outputs])
    if sample.task == "heatmap":
        return float(np.mean((scores > 0.5) == (sample.labels.reshape(scores.shape) > 0)))
    return float(np.mean(scores.argmax(axis=1) == sample.labels))


def output_sqnr(sample: Sample, outputs: list) -> float:
    ref = np.concatenate([r[k].ravel() for r in sample.reference for k in r])
    got = np.concatenate([o[k].ravel() for o in outputs for k in o])
    return sqnr_db(ref.astype(np.float64), got.astype(np.float64))


def evaluate(sample: Sample, model: onnx.ModelProto, *, optimized: bool = True) -> tuple[float, float]:
    outputs = run_model(model, sample.test, optimized=optimized)
    return task_metric(sample, outputs), output_sqnr(sample, outputs)


def ours(sample: Sample, settings: Int8Settings) -> tuple[float, float, float]:
    started = time.perf_counter()
    build = quantize_for_tensorrt(sample.model, sample.calibration, settings)
    seconds = time.perf_counter() - started
    return (*evaluate(sample, build.model), seconds)


class _Reader(ortq.CalibrationDataReader):
    def __init__(self, feeds):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def ort_static(sample: Sample, method: str) -> tuple[float, float, float]:
    folded = fold_conv_bn(sample.model).model
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.onnx", Path(folder) / "out.onnx"
        onnx.save(folded, str(source))
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its progress prints would break the table
            ortq.quantize_static(
                str(source), str(target), _Reader(sample.calibration), quant_format=ortq.QuantFormat.QDQ, per_channel=True,
                activation_type=ortq.QuantType.QInt8, weight_type=ortq.QuantType.QInt8,
                calibrate_method=getattr(ortq.CalibrationMethod, method),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        seconds = time.perf_counter() - started
        return (*evaluate(sample, onnx.load(str(target))), seconds)


def row(label: str, figures: tuple[float, ...]) -> str:
    metric, sqnr = figures[:2]
    seconds = f"{figures[2]:8.2f}" if len(figures) > 2 else " " * 8
    return f"  {label:<48} {metric:>8.2%} {sqnr:>9.2f} {seconds}"


def bench_model(sample: Sample) -> dict[str, list[tuple[str, tuple]]]:
    rows: dict[str, list] = {"ours": [], "ort": []}
    for method, percentile in OUR_CALIBRATORS:
        label = Int8Settings(method=method, percentile=percentile).label
        rows["ours"].append((f"ours {label}", ours(sample, Int8Settings(method=method, percentile=percentile))))
    for method in ORT_CALIBRATORS:
        rows["ort"].append((f"ORT quantize_static {method}", ort_static(sample, method)))
    return rows


def recovery_rows(sample: Sample) -> list[tuple[str, tuple]]:
    """Per-channel, per-tensor, per-tensor+CLE (ReLU6 pairs skipped, then swapped), +bias correction."""
    rows = []
    for method, percentile in RECOVERY_METHODS:
        base = Int8Settings(method=method, percentile=percentile)
        for settings, note in (
            (base, ""),
            (dataclasses.replace(base, per_channel=False), ""),
            (dataclasses.replace(base, per_channel=False, cle=True), " cle(skip)"),
            (dataclasses.replace(base, per_channel=False, cle=True, cle_relu6="swap_to_relu"), " cle(swap)"),
            (dataclasses.replace(base, per_channel=False, cle=True, cle_relu6="swap_to_relu", bias_correction=True), " cle(swap)+bc"),
        ):
            rows.append((f"ours {settings.label.split(' ')[0]} {('per-channel' if settings.per_channel else 'per-tensor')}{note}", ours(sample, settings)))
    return rows


def swapped_float(sample: Sample) -> tuple[float, float]:
    from onnx2trt_check.quant.pipeline import prepare_for_quantization

    prepared, _ = prepare_for_quantization(sample.model, sample.calibration, Int8Settings(cle=True, cle_relu6="swap_to_relu"))
    return evaluate(sample, prepared, optimized=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=MODELS, help="folder with manifest.json. Defaults to models/")
    parser.add_argument("--only", action="append", default=[], help="model name to run (repeatable). Defaults to all")
    args = parser.parse_args(argv)
    manifest = json.loads((args.models / "manifest.json").read_text())["models"]
    names = args.only or list(manifest)
    print(NOTE)
    verdicts = []
    for name in names:
        sample = load_sample(args.models, name, manifest[name])
        print(f"\n{name} ({'pixel accuracy at 0.5' if sample.task == 'heatmap' else 'top-1 accuracy'} on {len(sample.test)} test feeds, "
              f"{len(sample.calibration)} calibration feeds)")
        print(f"  {'configuration':<48} {'metric':>8} {'SQNR dB':>9} {'quant s':>8}")
        print(row("fp32 (ORT reference)", (task_metric(sample, sample.reference), float("inf"))))
        rows = bench_model(sample)
        for label, figures in rows["ours"] + rows["ort"]:
            print(row(label, figures))
        verdicts.append(_verdict(name, rows))
        if name == RECOVERY_MODEL:
            print("  per-tensor recovery:")
            print(row("fp32 with cle(swap) (no int8)", swapped_float(sample)))
            for label, figures in recovery_rows(sample):
                print(row(label, figures))
    print("\nGoal 1: our best configuration >= ORT's best, on the task metric and on SQNR:")
    for line in verdicts:
        print(f"  {line}")
    return 0


def _verdict(name: str, rows: dict) -> str:
    parts = []
    for index, what, unit in ((0, "metric", "%"), (1, "SQNR", " dB")):
        ours_best = max(rows["ours"], key=lambda r: r[1][index])
        ort_best = max(rows["ort"], key=lambda r: r[1][index])
        met = "met" if ours_best[1][index] >= ort_best[1][index] else "NOT met"
        scale = 100 if unit == "%" else 1
        parts.append(f"{what} {met} ({ours_best[0]} {ours_best[1][index] * scale:.2f}{unit} vs {ort_best[0]} {ort_best[1][index] * scale:.2f}{unit})")
    return f"{name}: " + "; ".join(parts)

if __name__ == "__main__":
    sys.exit(main())
