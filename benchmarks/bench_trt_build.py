"""Parse and build time and engine size with the real TensorRT builder, beside `polygraphy convert`.

For each sample model (models/*.onnx), its fp16 artifact and its int8 QDQ artifact (our quantizer,
calibrated on models/<name>.calib.npz), and a ResNet-50-sized model (benchmarks/synthetic.py), in
one run: our parse and build (onnx2trt_check.trt.build, in this process) and `polygraphy convert
FILE -o FILE.engine` of the same file (a fresh process; POLYGRAPHY_USE_TENSORRT_RTX=1 for
TensorRT-RTX), with its wall time. Then the time the trt items add to `pytest --model` on a sample
model: the run with the selected flavour against the run with ONNX2TRT_CHECK_TRT=tensorrt where
TensorRT proper is not installed (the trt items skip at once). Goal: at most 1.5 s.

Every figure names the flavour and version; a TensorRT-RTX figure is never a TensorRT 10/11 one.

Usage: python benchmarks/bench_trt_build.py [--skip-large] [--repeats 7] [--budget-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import resnet50_like  # noqa: E402

from onnx2trt_check import quantize  # noqa: E402
from onnx2trt_check.precision.fp16 import convert_to_fp16  # noqa: E402
from onnx2trt_check.trt import flavour  # noqa: E402
from onnx2trt_check.trt.build import build_engine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def files(folder: Path, *, large: bool) -> list[tuple[str, Path]]:
    """(label, path) of every sample model, its fp16 and int8 artifacts, and the large model."""
    found = []
    for model in sorted((ROOT / "models").glob("*.onnx")):
        found.append((model.stem, model))
        fp16 = folder / f"{model.stem}.fp16.onnx"
        onnx.save(convert_to_fp16(onnx.load(model)).model, fp16)
        found.append((f"{model.stem} fp16", fp16))
        int8 = folder / f"{model.stem}.int8.onnx"
        quantize(model, calibration_data=model.with_suffix(".calib.npz"), output=int8)
        found.append((f"{model.stem} int8", int8))
    if large:
        path = folder / "resnet50_like.onnx"
        onnx.save(resnet50_like(224), path)
        found.append(("resnet50_like (224x224)", path))
    return found


def ours(path: Path, chosen: flavour.Flavour) -> tuple[float, float, int, bool]:
    feeds = _feeds(path)
    result = build_engine(path, chosen, feeds=feeds)
    return result.parse.seconds, result.seconds, result.engine_bytes, result.ok


def _feeds(path: Path) -> list[dict]:
    """One feed with batch 1 for a dynamic batch (the sample models' only dynamic dim)."""
    model = onnx.load(path, load_external_data=False)
    feed = {}
    for value in model.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        feed[value.name] = np.zeros(dims, np.float32)
    return [feed]


def polygraphy_convert(path: Path, chosen: flavour.Flavour, folder: Path) -> tuple[float, bool]:
    engine = folder / f"{path.stem}.polygraphy.engine"  # the benchmark's folder, never beside the sample models
    env = dict(os.environ, POLYGRAPHY_USE_TENSORRT_RTX="1" if chosen.is_rtx else "0")
    shapes = ["--trt-min-shapes", "input:[1,1,16,16]", "--trt-opt-shapes", "input:[1,1,16,16]", "--trt-max-shapes", "input:[1,1,16,16]"]
    dynamic = any(not d.HasField("dim_value") for v in onnx.load(path, load_external_data=False).graph.input for d in v.type.tensor_type.shape.dim)
    command = [str(Path(sys.executable).parent / "polygraphy"), "convert", str(path), "-o", str(engine), *(shapes if dynamic else [])]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode == 0 and engine.exists()


def pytest_cost(model: Path, repeats: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(wall, CPU) seconds of `pytest --model`, alternating: with the trt items, and with them
    skipping at once (ONNX2TRT_CHECK_TRT=tensorrt, which is not installed here). CPU time (user +
    sys of pytest and its TensorRT worker) is what a loaded machine inflates least. Each run must
    pass, and the first must have built for real: otherwise the difference would measure nothing."""
    def run(extra_env: dict, *, built: bool) -> tuple[float, float]:
        command = [sys.executable, "-m", "pytest", f"--model={model}", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run(command, env=dict(os.environ, **extra_env), capture_output=True, text=True, cwd=tempfile.gettempdir())
        seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = [line for line in done.stdout.splitlines() if line.strip().startswith("trt[fp32]")]
        if done.returncode != 0 or not rows or ("PASSED" in rows[0]) != built:
            raise SystemExit(f"pytest run not as expected (exit {done.returncode}, trt[fp32] row {rows}):\n{done.stdout[-3000:]}")
        return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    with_trt, without = [], []
    for _ in range(repeats):
        with_trt.append(run({}, built=True))
        without.append(run({flavour.ENV_VAR: "tensorrt"}, built=False))
    return with_trt, without


def build_table(chosen: flavour.Flavour, *, large: bool) -> None:
    print(f"{chosen.label}: parse and build on this machine (no GPU: ahead-of-time build), beside polygraphy convert")
    print(f"{'file':36} {'parse s':>8} {'build s':>8} {'engine bytes':>13} {'polygraphy convert s':>21}")
    with tempfile.TemporaryDirectory(prefix="bench_trt_build-") as folder:
        for label, path in files(Path(folder), large=large):
            parse_s, build_s, size, ok = ours(path, chosen)
            convert_s, converted = polygraphy_convert(path, chosen, Path(folder))
            state = "" if ok else "  (our build FAILED)"
            other = f"{convert_s:.2f}" + ("" if converted else " (failed)")
            print(f"{label:36} {parse_s:8.3f} {build_s:8.3f} {size:13,} {other:>21}{state}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--repeats", type=int, default=7, help="pytest runs with and without the trt items. Defaults to 7 each")
    parser.add_argument("--budget-only", action="store_true", help="only the pytest --model budget, no build table")
    args = parser.parse_args()
    chosen = flavour.select()
    if not args.budget_only:
        build_table(chosen, large=not args.skip_large)
    sample = ROOT / "models" / "convbn_classifier.onnx"
    with_trt, without = pytest_cost(sample, args.repeats)
    for index, what in enumerate(("wall", "CPU")):
        pairs = [(a[index], b[index]) for a, b in zip(with_trt, without)]
        added = statistics.median(a - b for a, b in pairs)
        print(f"pytest --model=models/{sample.name}, {what} time: {statistics.median(a for a, _ in pairs):.2f} s with the {chosen.label} items "
              f"(structure::trt_parse, trt[fp32|fp16]::build), {statistics.median(b for _, b in pairs):.2f} s with them skipped "
              f"(ONNX2TRT_CHECK_TRT=tensorrt, not installed); added {added:+.2f} s, median of {args.repeats} alternating pairs (goal: <= 1.5 s)")
        print(f"  with:    {' '.join(f'{a:.2f}' for a, _ in pairs)}\n  without: {' '.join(f'{b:.2f}' for _, b in pairs)}")

if __name__ == "__main__":
    main()
