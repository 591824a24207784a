"""Int8 quality of our default (`quantize` with no options: automatic calibration, per-channel
weights) against onnxruntime.quantization.quantize_static over all of its settings, in the same run,
on the same calibration and test data.

Models: every sample model (models/manifest.json: its .calib.npz calibrates, its .npz and
.labels.npy measure) and three transformer encoders built from transformers configs with random
weights (benchmarks/encoders.py; no labels, so SQNR only). Figures per model: the task metric (top-1
against the labels, or the heatmap model's pixel accuracy at 0.5; models/metrics.py), the SQNR of
the int8 output against fp32, and top-1 agreement with fp32. Every int8 model runs on ONNX Runtime's
CPU with its Q/DQ as written: ONNX Runtime figures, not TensorRT ones.

quantize_static settings: calibrate_method MinMax, Entropy, Percentile, Distribution x per_channel
on/off x reduce_range on/off, QuantFormat.QDQ, int8 symmetric activations and weights (zero point 0:
what TensorRT deploys; asymmetric uint8 activations are not a TensorRT model). ORT is given the
BN-folded model, the fold our pipeline starts with. Its best setting is taken per figure (the best
metric and the best SQNR may come from different settings).

Goals printed at the end: our default >= ORT's best on the task metric and on SQNR for every sample
model; >= 25 dB on every encoder; bias correction lowers no sample model's task metric by more than
0.1 point; the automatic calibration (the default) takes at most twice the time of `--calibration-method
max` on the same model and data (quantize_for_tensorrt's wall time, the fastest of --repeat runs of
each, alternated so that load drifts hit both alike).

The automatic calibration's per-tensor pass has a trial budget (quant/auto_range.py): each model
prints how many tensors it tried and what the trials cost; `--unbudgeted` also runs it without the
budget (every tensor tried) and prints that time and the held-out score the budget gives up;
`--encoder-layers 12` builds deeper encoders for the scaling with depth.

    python benchmarks/bench_quantization.py [--only NAME ...] [--no-encoders] [--no-ort-on-encoders] [--no-ort] [--repeat N]
        [--unbudgeted] [--encoder-layers N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime import quantization as ortq
from scipy import stats

from onnx2trt_check.compare import sqnr_db, top_k_agreement
from onnx2trt_check.data import feeds_from_npz
from onnx2trt_check.model import load_model, resolve_input_specs
from onnx2trt_check.quant import auto_range
from onnx2trt_check.quant.auto_range import split_held_out
from onnx2trt_check.quant.pipeline import Int8Settings, quantize_for_tensorrt
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.fold_conv_bn import fold_conv_bn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402  (models/metrics.py: the task metrics, torch-free)

ORT_GRID = list(itertools.product(("MinMax", "Entropy", "Percentile", "Distribution"), (True, False), (False, True)))
ENCODER_FLOOR_DB = 25.0
BC_TOLERANCE = 0.001  # 0.1 point of the task metric
AUTO_TIME_GOAL = 2.0  # auto calibration's wall time over max calibration's


@dataclasses.dataclass
class Sample:
    name: str
    task: str | None
    model: onnx.ModelProto
    calibration: list
    test: list
    labels: np.ndarray | None
    reference: list


@dataclasses.dataclass
class Figures:
    metric: float | None
    sqnr: float
    agreement: float | None
    seconds: float
    top1: np.ndarray | None = None  # the class predicted per test row (classifiers), for the paired analysis
    selection: dict | None = None  # the automatic calibration's figures (quant/auto_range.AutoRanges.figures)


def load_sample(folder: Path, name: str, entry: dict) -> Sample:
    model = load_model(folder / entry["file"]).proto
    specs = resolve_input_specs(model, {})
    data = entry["data"]
    test = feeds_from_npz(folder / data["inputs"], specs)
    return Sample(name, entry["task"], model, feeds_from_npz(folder / data["calibration"], specs), test,
                  np.load(folder / data["labels"]), run_model(model, test))


def encoder_sample(name: str) -> Sample:
    import encoders

    model, calibration, test = encoders.build(name)
    return Sample(name, None, model, calibration, test, None, run_model(model, test))


def evaluate(sample: Sample, model: onnx.ModelProto, seconds: float) -> Figures:
    outputs = run_model(model, sample.test, optimized=True)
    ref = np.concatenate([r[k].ravel() for r in sample.reference for k in r]).astype(np.float64)
    got = np.concatenate([o[k].ravel() for o in outputs for k in o]).astype(np.float64)
    first = next(iter(sample.reference[0]))
    agreement, _ = top_k_agreement([r[first] for r in sample.reference], [o[first] for o in outputs])
    return Figures(task_metric(sample, outputs), sqnr_db(ref, got), agreement, seconds, predicted_classes(sample, outputs))


def predicted_classes(sample: Sample, outputs: list) -> np.ndarray | None:
    if sample.labels is None or sample.task == "heatmap":
        return None
    return np.concatenate([next(iter(o.values())) for o in outputs]).reshape(len(sample.labels), -1).argmax(axis=1)


def task_metric(sample: Sample, outputs: list) -> float | None:
    if sample.labels is None:
        return None
    scores = np.concatenate([next(iter(o.values())) for o in outputs])
    if sample.task == "heatmap":
        return metrics.pixel_accuracy(scores, sample.labels.reshape(scores.shape))
    return metrics.top1_accuracy(scores, sample.labels)


def ours(sample: Sample, settings: Int8Settings) -> Figures:
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # the calibration progress counter
        build = quantize_for_tensorrt(sample.model, sample.calibration, settings)
    figures = evaluate(sample, build.model, time.perf_counter() - started)
    figures.selection = build.report.selection
    return figures


@contextlib.contextmanager
def trial_budget(budget: float):
    """The automatic calibration with another per-tensor trial budget (auto_range reads
    TRIAL_BUDGET when it runs)."""
    saved = auto_range.TRIAL_BUDGET
    auto_range.TRIAL_BUDGET = budget
    try:
        yield
    finally:
        auto_range.TRIAL_BUDGET = saved


def pass_text(selection: dict) -> str:
    tried = selection["tensors"] - len(selection["tensors_untried"])
    return (f"{tried} of {selection['tensors']} tensors tried, trials cost {selection['trial_cost']:g} of a budget of"
            f" {selection['trial_budget']:g} full evaluations, held-out score {selection['final_score']:.3f} dB")


def unbudgeted_line(sample: Sample, budgeted: dict, seconds: float) -> str:
    """The automatic calibration without its trial budget (every tensor tried, as before the
    budget): its time and held-out score against the budgeted default's."""
    with trial_budget(math.inf):
        started = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            build = quantize_for_tensorrt(sample.model, sample.calibration, Int8Settings())
        elapsed = time.perf_counter() - started
    selection = build.report.selection
    change = budgeted["final_score"] - selection["final_score"]
    return (f"  auto without the trial budget: {elapsed:.2f} s (budgeted {seconds:.2f} s), {pass_text(selection)};"
            f" the budget changes the held-out score by {change:+.3f} dB")


def quantize_seconds(sample: Sample, settings: Int8Settings) -> tuple[float, float]:
    """(wall, CPU) seconds of one quantize_for_tensorrt: the process's CPU time (every thread's)
    moves less than the wall time when other work shares the machine."""
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(io.StringIO()):
        quantize_for_tensorrt(sample.model, sample.calibration, settings)
    return time.perf_counter() - started, time.process_time() - cpu


def auto_and_max_seconds(sample: Sample, repeat: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The fastest of `repeat` runs of the default (auto) and of max calibration, alternated, as
    (wall, CPU) seconds each (each the least of its runs)."""
    auto, maximum = [], []
    for _ in range(repeat):
        auto.append(quantize_seconds(sample, Int8Settings()))
        maximum.append(quantize_seconds(sample, Int8Settings(method="max")))
    return tuple(map(min, zip(*auto))), tuple(map(min, zip(*maximum)))


class _Reader(ortq.CalibrationDataReader):
    def __init__(self, feeds):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def ort_static(sample: Sample, method: str, per_channel: bool, reduce_range: bool) -> Figures | None:
    folded = fold_conv_bn(sample.model).model
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.onnx", Path(folder) / "out.onnx"
        onnx.save(folded, str(source))
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ortq.quantize_static(
                    str(source), str(target), _Reader(sample.calibration), quant_format=ortq.QuantFormat.QDQ,
                    per_channel=per_channel, reduce_range=reduce_range, activation_type=ortq.QuantType.QInt8,
                    weight_type=ortq.QuantType.QInt8, calibrate_method=getattr(ortq.CalibrationMethod, method),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
                )
        except Exception as exc:  # a setting quantize_static cannot run on this model is a row, not a crash
            print(f"  ORT {method} per_channel={per_channel} reduce_range={reduce_range}: failed ({type(exc).__name__}: {exc})")
            return None
        return evaluate(sample, onnx.load(str(target)), time.perf_counter() - started)


def ort_grid(sample: Sample) -> dict[str, Figures]:
    found = {}
    for method, per_channel, reduce_range in ORT_GRID:
        label = f"ORT {method} {'per-channel' if per_channel else 'per-tensor'}{' reduce_range' if reduce_range else ''}"
        figures = ort_static(sample, method, per_channel, reduce_range)
        if figures is not None:
            found[label] = figures
    return found


def row(label: str, f: Figures) -> str:
    metric = f"{f.metric:>8.2%}" if f.metric is not None else f"{'-':>8}"
    agreement = f"{f.agreement:>8.1%}" if f.agreement is not None else f"{'-':>8}"
    return f"  {label:<44} {metric} {f.sqnr:>9.2f} {agreement} {f.seconds:>8.2f}"


def best(rows: dict[str, Figures], key) -> tuple[str, Figures]:
    return max(rows.items(), key=lambda item: key(item[1]))


def bench(sample: Sample, *, with_ort: bool, with_bc: bool, repeat: int, unbudgeted: bool = False) -> dict:
    print(f"\n{sample.name} ({len(sample.calibration)} calibration feeds, {len(sample.test)} test feeds)")
    print(f"  {'configuration':<44} {'metric':>8} {'SQNR dB':>9} {'top1-agr':>8} {'quant s':>8}")
    if sample.labels is not None:
        print(f"  {'fp32 (ONNX Runtime reference)':<44} {task_metric(sample, sample.reference):>8.2%}")
    default = ours(sample, Int8Settings())
    print(row("ours default (auto per-channel)", default))
    result = {"default": default, "max": ours(sample, Int8Settings(method="max"))}
    print(row("ours --calibration-method max", result["max"]))
    (auto, auto_cpu), (maximum, maximum_cpu) = auto_and_max_seconds(sample, repeat)
    result["seconds"] = auto, maximum
    print(f"  quantize time, fastest of {repeat}: auto {auto:.2f} s, max {maximum:.2f} s, ratio {auto / maximum:.2f}"
          f" (CPU time: auto {auto_cpu:.2f} s, max {maximum_cpu:.2f} s, ratio {auto_cpu / maximum_cpu:.2f})")
    print(f"  auto's per-tensor pass: {pass_text(default.selection)}")
    if unbudgeted:
        print(unbudgeted_line(sample, default.selection, auto))
    if with_bc:
        result["bc"] = ours(sample, Int8Settings(bias_correction=True))
        print(row("ours default + --bias-correction", result["bc"]))
        result["per_tensor"] = ours(sample, Int8Settings(per_channel=False))
        print(row("ours --per-tensor", result["per_tensor"]))
        result["per_tensor_bc"] = ours(sample, Int8Settings(per_channel=False, bias_correction=True))
        print(row("ours --per-tensor --bias-correction", result["per_tensor_bc"]))
    if with_ort:
        result["ort"] = ort_grid(sample)
        for label, figures in result["ort"].items():
            print(row(label, figures))
    return result


def verdict_lines(name: str, result: dict, *, encoder: bool) -> list[str]:
    default, lines = result["default"], []
    auto, maximum = result["seconds"]
    held = "holds" if auto <= AUTO_TIME_GOAL * maximum else "FAILS"
    lines.append(f"{name}: auto time {held} ({auto:.2f} s vs max {maximum:.2f} s: {auto / maximum:.2f}x, goal <= {AUTO_TIME_GOAL:g}x)")
    if encoder:
        lines.append(f"{name}: SQNR {'holds' if default.sqnr >= ENCODER_FLOOR_DB else 'FAILS'} ({default.sqnr:.2f} dB vs floor {ENCODER_FLOOR_DB} dB)")
    if result.get("ort"):
        ort_metric = best(result["ort"], lambda f: f.metric if f.metric is not None else -1)
        ort_sqnr = best(result["ort"], lambda f: f.sqnr)
        if default.metric is not None:
            held = default.metric >= ort_metric[1].metric
            lines.append(f"{name}: metric {'holds' if held else 'FAILS'} (ours {default.metric:.2%} vs {ort_metric[0]} {ort_metric[1].metric:.2%})")
        held = default.sqnr >= ort_sqnr[1].sqnr
        lines.append(f"{name}: SQNR {'holds' if held else 'FAILS'} (ours {default.sqnr:.2f} dB vs {ort_sqnr[0]} {ort_sqnr[1].sqnr:.2f} dB)")
    for base, corrected, what in (("default", "bc", "--bias-correction"), ("per_tensor", "per_tensor_bc", "--per-tensor --bias-correction")):
        if corrected in result and result[base].metric is not None:
            change = result[corrected].metric - result[base].metric
            held = "holds" if change >= -BC_TOLERANCE else "FAILS"
            lines.append(f"{name}: {what} {held} (metric {change * 100:+.2f} pt, SQNR {result[corrected].sqnr - result[base].sqnr:+.2f} dB)")
    return lines


def paired_lines(sample: Sample, result: dict) -> list[str]:
    """Which test rows a metric comparison turns on (not a verdict): for our default against
    quantize_static's best-metric setting, and for each bias correction against the same run
    without, the rows only one side classifies right, with fp32's own answer and top-1 margin there
    (rank 1: the smallest margin of all test rows) and the two-sided exact McNemar test of the
    discordant rows (scipy's binomtest). Also the smallest fp32 margin on the held-out calibration
    feeds the automatic calibration judges by: a label-free criterion sees no row closer to a
    decision boundary than that."""
    if result["default"].top1 is None:
        return []
    margins, fp32_top1 = _margins(sample.reference, len(sample.labels))
    _, held, _ = split_held_out(sample.calibration)
    held_margins, _ = _margins(run_model(sample.model, held), len(held))
    lines = [f"{sample.name}: fp32 top-1 margin: smallest {margins.min():.3f} on the {len(margins)} test rows,"
             f" {held_margins.min():.3f} on the {len(held)} held-out calibration feeds auto judges by"]
    pairs = [(f"ours default vs {best(result['ort'], lambda f: f.metric)[0]}", result["default"], best(result["ort"], lambda f: f.metric)[1])] if result.get("ort") else []
    pairs += [(f"{what} vs without", result[c], result[b]) for b, c, what in (("default", "bc", "--bias-correction"), ("per_tensor", "per_tensor_bc", "--per-tensor --bias-correction")) if c in result]
    for title, ours_, theirs in pairs:
        only_ours = np.flatnonzero((ours_.top1 == sample.labels) & (theirs.top1 != sample.labels))
        only_theirs = np.flatnonzero((ours_.top1 != sample.labels) & (theirs.top1 == sample.labels))
        if not len(only_ours) + len(only_theirs):
            continue
        p_value = stats.binomtest(min(len(only_ours), len(only_theirs)), len(only_ours) + len(only_theirs), 0.5).pvalue
        rows = {side: _rows(found, margins, fp32_top1 == sample.labels) for side, found in (("ours", only_ours), ("theirs", only_theirs))}
        lines.append(f"{sample.name}: {title}: right only in the first: {rows['ours']}; only in the second: {rows['theirs']};"
                     f" McNemar exact p = {p_value:.2f}; top-1 agreement with fp32 {ours_.agreement:.1%} vs {theirs.agreement:.1%}")
    return lines


def _margins(outputs: list, rows: int) -> tuple[np.ndarray, np.ndarray]:
    logits = np.concatenate([next(iter(o.values())) for o in outputs]).reshape(rows, -1)
    ordered = np.sort(logits, axis=1)
    return ordered[:, -1] - ordered[:, -2], logits.argmax(axis=1)


def _rows(found: np.ndarray, margins: np.ndarray, fp32_right: np.ndarray, *, shown: int = 5) -> str:
    """The rows by smallest fp32 margin first, at most `shown` of them with a count of the rest."""
    if not len(found):
        return "none"
    ordered = found[np.argsort(margins[found], kind="stable")]
    text = ", ".join(_row(i, margins, fp32_right[i]) for i in ordered[:shown])
    wrong = int(np.sum(~fp32_right[found]))
    return text if len(found) <= shown else f"{text} and {len(found) - shown} more ({len(found)} rows, fp32 wrong on {wrong})"


def _row(index: int, margins: np.ndarray, fp32_right: bool) -> str:
    rank = int(np.sum(margins <= margins[index]))
    return f"row {index} (fp32 {'right' if fp32_right else 'wrong'}, margin {margins[index]:.3f}, rank {rank})"


def main(argv: list[str] | None = None) -> int:
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's pre-processing advice on every call
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="folder with manifest.json. Defaults to models/")
    parser.add_argument("--only", action="append", default=[], help="model name to run (repeatable). Defaults to all")
    parser.add_argument("--no-encoders", action="store_true", help="skip the transformer encoders (they need torch and transformers)")
    parser.add_argument("--no-ort-on-encoders", action="store_true", help="run quantize_static's grid on the sample models only")
    parser.add_argument("--no-ort", action="store_true", help="skip quantize_static's grid everywhere (the time goal alone)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of auto and of max for the time ratio. Defaults to 3")
    parser.add_argument("--unbudgeted", action="store_true", help="also run auto without its trial budget (every tensor tried): its time and held-out score")
    parser.add_argument("--encoder-layers", type=int, help="layers of the built encoders (the scaling with depth). Defaults to encoders.LAYERS (6)")
    args = parser.parse_args(argv)
    manifest = json.loads((args.models / "manifest.json").read_text())["models"]
    import encoders

    encoders.LAYERS = args.encoder_layers or encoders.LAYERS
    print(f"encoders (BERT-, ViT-, GPT-2-style) built with {encoders.LAYERS} layers, hidden {encoders.HIDDEN}")
    names = args.only or [*manifest, *([] if args.no_encoders else encoders.ENCODERS)]
    verdicts, paired = [], []
    for name in names:
        encoder = name not in manifest
        sample = encoder_sample(name) if encoder else load_sample(args.models, name, manifest[name])
        with_ort = not args.no_ort and not (encoder and args.no_ort_on_encoders)
        result = bench(sample, with_ort=with_ort, with_bc=not encoder, repeat=args.repeat, unbudgeted=args.unbudgeted)
        verdicts += verdict_lines(name, result, encoder=encoder)
        paired += [] if encoder else paired_lines(sample, result)
    print("\nGoals (our default against quantize_static's best setting in this run; encoders >= 25 dB; bias correction >= -0.1 pt;"
          " auto calibration time <= 2x max's):")
    for line in verdicts:
        print(f"  {line}")
    if paired:
        print("\nPaired row analysis (not a verdict; the goals above stand as printed): the test rows each metric comparison"
              " turns on, fp32's answer and top-1 margin there (rank 1 = the smallest of all test rows), the exact McNemar test:")
        for line in paired:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
