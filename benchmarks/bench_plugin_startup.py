"""What the installed plugin costs a pytest run that checks no model.

The plugin is registered through `pytest11`, so every pytest run in an environment where the package
is installed imports it. A one-test project runs as fresh processes, alternating, with the plugin and
with `-p no:onnx2trt_check`; the medians are printed with their difference. Goal (issue 12): within
0.1 s of each other.

Usage: python benchmarks/bench_plugin_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 0.1
COMMON = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]


def run(folder: Path, extra: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", *COMMON, *extra], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_plugin_startup-") as folder:
        path = Path(folder)
        (path / "test_one.py").write_text("def test_one():\n    assert True\n")
        run(path, [])  # warm the file cache once
        with_plugin, without = [], []
        for _ in range(args.repeats):
            with_plugin.append(run(path, []))
            without.append(run(path, ["-p", "no:onnx2trt_check"]))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(f"pytest, one test, {args.repeats} runs each (medians):")
    print(f"  with the onnx2trt_check plugin      {a:.3f} s")
    print(f"  with -p no:onnx2trt_check           {b:.3f} s")
    verdict = "meets" if a - b <= GOAL_SECONDS else "MISSES"
    print(f"  difference {a - b:+.3f} s ({verdict} the goal of <= {GOAL_SECONDS} s)")


if __name__ == "__main__":
    main()
