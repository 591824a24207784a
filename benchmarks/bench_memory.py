"""Peak memory of the commands tests/test_large_model.py runs on a model over protobuf's 2 GiB limit,
as a multiple of the model's size, beside what the ONNX Runtime sessions alone cost.

The model is tests/test_large_model.py's: y = x @ W with a float32 weight W of 1024 x N in external
data (N = 524,800 by default: 2.15 GB, just over 2 GiB; `--columns` makes it smaller for a quick
look). Each command runs as a fresh process, one at a time, and its peak resident memory is its own
VmHWM read from /proc at its exit (a forked child's ru_maxrss would include this script's memory):

  quantize    onnx2trt-check quantize big.onnx -o q.onnx --calibration-data x.npz --method max
  optimize    onnx2trt-check optimize big.onnx -o out.onnx --passes optimize --inputs x.npz
  pytest      pytest --model big.onnx --target ort --target cpu-fp16-emu --artifact-dir art
              -k "target or optimize" -p no:randomly
  session     one ONNX Runtime session of big.onnx, nothing else: what a session costs (ORT's copy of
              the weights plus the transient of MLAS pre-packing them for MatMul)

Goal (issue 18): each command's peak within 3x the model plus the sessions it holds at once.
The figure printed is the peak over the model's size, with the session's own peak beside it.

Another version's figures: `PYTHONPATH=DIR python benchmarks/bench_memory.py`, DIR holding its
onnx2trt_check package (e.g. `git archive main onnx2trt_check | tar -x -C DIR`); the commands run in
child processes, which import the package from PYTHONPATH first.

Usage: python benchmarks/bench_memory.py [--columns N] [--only NAME]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

K = 1024
# Runs one job in this fresh process and writes its peak resident memory (VmHWM, kB) to argv[1].
PEAK = """
import atexit, sys
peak_file = sys.argv[1]
def report():
    open(peak_file, "w").write(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
atexit.register(report)
job, args = sys.argv[2], sys.argv[3:]
if job == "pytest":
    import pytest
    sys.exit(pytest.main(args))
if job == "cli":
    from onnx2trt_check.cli.main import main
    sys.exit(main(args))
from onnx2trt_check.runtime import create_session  # job == "session"
session = create_session(args[0], optimized=False)
"""
JOBS = {
    "quantize": ("cli", ["quantize", "big.onnx", "-o", "q.onnx", "--calibration-data", "x.npz", "--method", "max"]),
    "optimize": ("cli", ["optimize", "big.onnx", "-o", "out.onnx", "--passes", "optimize", "--inputs", "x.npz"]),
    "pytest": ("pytest", ["--model", "big.onnx", "--target", "ort", "--target", "cpu-fp16-emu", "--artifact-dir", "art",
                          "-k", "target or optimize", "-p", "no:randomly", "-p", "no:cacheprovider", "-q"]),
    "session": ("session", ["big.onnx"]),
}


def write_model(folder: Path, columns: int) -> int:
    """tests/test_large_model.py's model, written row by row; its weight's size in bytes."""
    size = K * columns * 4
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[K, columns], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "big.onnx.data"), ("offset", "0"), ("length", str(size))):
        weight.external_data.add(key=key, value=value)
    rng = np.random.default_rng(0)
    with open(folder / "big.onnx.data", "wb") as f:
        for _ in range(K):
            f.write((rng.standard_normal(columns, dtype=np.float32) * 0.01).tobytes())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, columns])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "big.onnx").write_bytes(model.SerializeToString())
    np.savez(folder / "x.npz", x=rng.standard_normal((1, K)).astype(np.float32))
    return size


def measure(job: str, args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process running `job` in `cwd`."""
    peak_file = cwd / "peak.txt"
    peak_file.unlink(missing_ok=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK, str(peak_file), job, *args], cwd=cwd, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"{job} {' '.join(args)} failed:\n{result.stdout.decode()[-2000:]}{result.stderr.decode()[-2000:]}")
    return time.perf_counter() - started, int(peak_file.read_text()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=524_800, help="columns of W (1024 rows of float32). Defaults to 524800: 2.15 GB")
    parser.add_argument("--only", choices=list(JOBS), action="append", help="run only these commands (repeatable)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        size_mb = write_model(folder, args.columns) / 2**20
        print(f"model: {size_mb:.0f} MB of weights (1024 x {args.columns} float32, external data)")
        session_mb = None
        for name in ["session"] + [n for n in JOBS if n != "session" and (not args.only or n in args.only)]:
            job, job_args = JOBS[name]
            seconds, peak = measure(job, job_args, folder)
            session_mb = peak if name == "session" else session_mb
            extra = "" if name == "session" else f"  ({(peak - session_mb) / size_mb:.2f}x the model above one session)"
            print(f"{name:<9} peak {peak:8.0f} MB = {peak / size_mb:5.2f}x the model{extra}, {seconds:6.1f} s")
            for leftover in ("q.onnx", "q.onnx.data", "out.onnx", "out.onnx.data", "art"):
                path = folder / leftover
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
