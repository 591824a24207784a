"""Where the time of `pytest --model M` goes: per item, split by kind of work.

One in-process run per model with a small pytest plugin that profiles every item (cProfile) and sums
the cumulative time of a few entry points, chosen so that they do not nest in one another:

  session    onnxruntime.InferenceSession.__init__ (graph load, optimization, weight hand-over)
  run        InferenceSession.run
  shapes     onnx.shape_inference.infer_shapes
  checker    onnx.checker.check_model
  serialize  protobuf SerializeToString / ParseFromString / onnx.load / onnx.save outside the above
  other      everything else (conversion, transforms' own Python, comparisons)

plus the time before the first item (startup: imports, option reading, model loading and feed
making in pytest_configure) and after the last one. Printed per item, then per kind over the run.
The sample models and a ResNet-50-sized model (benchmarks/synthetic.py, about 100 MB) are measured.

Usage: python benchmarks/bench_profile.py [--skip-large] [--top N] [pytest args ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = {
    "session": [("onnxruntime/capi/onnxruntime_inference_collection.py", "__init__")],
    "run": [("onnxruntime/capi/onnxruntime_inference_collection.py", "run")],
    "shapes": [("onnx/shape_inference.py", "infer_shapes")],
    "checker": [("onnx/checker.py", "check_model")],
    "serialize": [("~", "<method 'SerializeToString' of 'google._upb._message.Message' objects>"),
                  ("~", "<method 'ParseFromString' of 'google._upb._message.Message' objects>")],
}

# Runs in a fresh process: pytest in-process with the profiling plugin; prints one line per item.
CHILD = r'''
import cProfile, pstats, sys, time, json
started = time.perf_counter()
import pytest

KINDS = json.loads(sys.argv[1])
rows = []

def spent(stats):
    found = {}
    for (path, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        for kind, entries in KINDS.items():
            if any(path.endswith(p) and name == n for p, n in entries):
                found[kind] = found.get(kind, 0.0) + cumulative
    return found

class Profile:
    first = None
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        if Profile.first is None:
            Profile.first = time.perf_counter()
        profiler = cProfile.Profile()
        t = time.perf_counter()
        profiler.enable()
        try:
            return (yield)
        finally:
            profiler.disable()
            total = time.perf_counter() - t
            rows.append((item.nodeid.split("::", 1)[-1], total, spent(pstats.Stats(profiler))))

code = pytest.main(sys.argv[2:], plugins=[Profile()])
ended = time.perf_counter()
print("JSON" + json.dumps({"rows": rows, "startup": (Profile.first or ended) - started, "total": ended - started, "exit": int(code)}))
'''


def profile(model: Path, pytest_args: list[str], cwd: Path) -> dict:
    args = [json.dumps(KINDS), "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--model", str(model), *pytest_args]
    result = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, capture_output=True, text=True)
    line = next((x for x in result.stdout.splitlines() if x.startswith("JSON")), None)
    if line is None:
        raise SystemExit(f"profiling {model.name} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return json.loads(line[4:])


def print_profile(name: str, data: dict, top: int) -> None:
    kinds = list(KINDS) + ["other"]
    rows = sorted(data["rows"], key=lambda r: -r[1])
    items_total = sum(r[1] for r in rows)
    print(f"\n{name}: {data['total']:.2f} s wall (startup {data['startup']:.2f} s, items {items_total:.2f} s, exit {data['exit']})")
    print(f"  {'item':<52}{'total':>7}" + "".join(f"{k:>10}" for k in kinds))
    sums = dict.fromkeys(kinds, 0.0)
    for rank, (item, total, found) in enumerate(rows):
        found = dict(found, other=max(total - sum(found.values()), 0.0))
        for kind in kinds:
            sums[kind] += found.get(kind, 0.0)
        if rank < top:
            print(f"  {item[:51]:<52}{total:>7.3f}" + "".join(f"{found.get(k, 0.0):>10.3f}" for k in kinds))
    print(f"  {'all items':<52}{items_total:>7.3f}" + "".join(f"{sums[k]:>10.3f}" for k in kinds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--top", type=int, default=12, help="items listed per model (the slowest). Defaults to 12")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="bench_profile-") as tmp:
        cwd = Path(tmp)
        models = [Path(shutil.copy(m, cwd)) for m in sorted((ROOT / "models").glob("*.onnx"))]
        if not args.skip_large:
            sys.path.insert(0, str(Path(__file__).parent))
            import onnx
            from synthetic import resnet50_like

            large = cwd / "resnet50_like.onnx"
            onnx.save(resnet50_like(size=224), str(large))
            models.append(large)
        started = time.perf_counter()
        for model in models:
            print_profile(model.name, profile(model, pytest_args, cwd), args.top)
    print(f"\nmeasured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
