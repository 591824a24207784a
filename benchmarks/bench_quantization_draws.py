"""How stable bench_quantization.py's task-metric verdicts are: the same comparisons over several
random calibration draws (a subset of each sample model's calibration feeds), so a verdict that
turns on one test row can be told from a systematic difference.

Per model and draw: the task metric of our default, of our default with --bias-correction, and of
quantize_static's best setting in that draw (bench_quantization.ORT_GRID). At the end per model: the
mean of each over the draws, quantize_static's best setting by its mean (the best-of-16 taken per
draw favours whichever setting was luckiest on the test rows), and in how many draws each goal of
bench_quantization.py held. ONNX Runtime CPU figures, like bench_quantization.py's.

    python benchmarks/bench_quantization_draws.py [--only NAME ...] [--draws N] [--fraction F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quantization as bq  # noqa: E402  (the models, our quantizer's and quantize_static's runs)

from onnx2trt_check.quant.pipeline import Int8Settings  # noqa: E402


def draw(sample: bq.Sample, rng: np.random.Generator, fraction: float) -> bq.Sample:
    """`sample` calibrated on a random `fraction` of its calibration feeds (order kept)."""
    count = max(2, round(len(sample.calibration) * fraction))
    picked = sorted(rng.choice(len(sample.calibration), count, replace=False))
    return dataclasses.replace(sample, calibration=[sample.calibration[i] for i in picked])


def one_draw(sample: bq.Sample) -> dict:
    grid = {label: figures.metric for label, figures in bq.ort_grid(sample).items()}
    return {"ours": bq.ours(sample, Int8Settings()).metric,
            "bias_correction": bq.ours(sample, Int8Settings(bias_correction=True)).metric, "ort": grid}


def summary_lines(name: str, fp32: float, runs: list[dict]) -> list[str]:
    ours = np.array([r["ours"] for r in runs])
    corrected = np.array([r["bias_correction"] for r in runs])
    best_per_draw = np.array([max(r["ort"].values()) for r in runs])
    means = {label: np.mean([r["ort"][label] for r in runs]) for label in runs[0]["ort"]}
    best_by_mean = max(means, key=means.get)
    n = len(runs)
    return [f"{name}: fp32 {fp32:.2%}; means over {n} draws: ours {ours.mean():.2%}, ours --bias-correction {corrected.mean():.2%},"
            f" quantize_static's best setting by mean ({best_by_mean}) {means[best_by_mean]:.2%}",
            f"{name}: ours >= quantize_static's best-of-grid held in {int((ours >= best_per_draw - 1e-9).sum())}/{n} draws;"
            f" ours' mean >= that setting's mean: {'yes' if ours.mean() >= means[best_by_mean] - 1e-9 else 'no'};"
            f" --bias-correction >= -{bq.BC_TOLERANCE:.1%} held in {int((corrected >= ours - bq.BC_TOLERANCE - 1e-9).sum())}/{n} draws"]


def main(argv: list[str] | None = None) -> int:
    logging.getLogger().setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=bq.ROOT / "models", help="folder with manifest.json. Defaults to models/")
    parser.add_argument("--only", action="append", default=[], help="sample model to run (repeatable). Defaults to all")
    parser.add_argument("--draws", type=int, default=10, help="calibration draws per model. Defaults to 10")
    parser.add_argument("--fraction", type=float, default=0.75, help="share of the calibration feeds in a draw. Defaults to 0.75")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws. Defaults to 0")
    args = parser.parse_args(argv)
    manifest = json.loads((args.models / "manifest.json").read_text())["models"]
    lines = []
    for name in args.only or manifest:
        sample = bq.load_sample(args.models, name, manifest[name])
        fp32 = bq.task_metric(sample, sample.reference)
        rng = np.random.default_rng(args.seed)
        runs = []
        for index in range(args.draws):
            runs.append(one_draw(draw(sample, rng, args.fraction)))
            best = max(runs[-1]["ort"].values())
            print(f"{name} draw {index}: fp32 {fp32:.2%}, ours {runs[-1]['ours']:.2%}, --bias-correction {runs[-1]['bias_correction']:.2%},"
                  f" quantize_static best {best:.2%}", flush=True)
        lines += summary_lines(name, fp32, runs)
    print("\nOver the draws (not a verdict; bench_quantization.py's goals stand as it prints them):")
    for line in lines:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
