"""How good is the latency regression gate on this machine? Prints figures; not a test.

A small Conv model runs in ONNX Runtime (CPU, one intra-op thread). Every iteration measures three
fresh sample sets back to back with `measure_latency` (default rounds): A, A' (same model, same
session) and S (the same call with a 10% slowdown injected by busy-waiting 10% of each call's own
measured run time). From them:

* A/A false-alarm rate: (A, A') judged by our rule (`decide_latency`, default `LatencyRule`) and by
  pytest-benchmark's `--benchmark-compare-fail=mean:5%` rule (its own `PercentageRegressionCheck`
  on our summary, which has the same field names). Which of the two is called the baseline
  alternates, so an order effect of measuring second cannot hide. A second A/A figure pairs each A'
  with the A of the iteration half a run away ("time-separated"), which adds the drift a CI
  baseline recorded earlier would see; it reuses the samples, no extra measurement.
* detection rate of the 10% slowdown: (A, S) under both rules.
* timing overhead: wall time of `measure_latency(run, rounds=N, warmup=0)` against a bare
  `for _ in range(N): session.run(...)` loop, alternated, median of the ratios.

Run: /tmp/venv/bin/python benchmarks/bench_regression_gate.py [--iterations 200]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from pytest_benchmark.utils import PercentageRegressionCheck
from scipy.stats import binomtest

from onnx2trt_check.baseline import LatencyRule, decide_latency
from onnx2trt_check.bench import measure_latency, summarize
from onnx2trt_check.runtime import create_session

SLOWDOWN = 0.10
PYTEST_BENCHMARK_RULE = PercentageRegressionCheck("mean", 5)  # --benchmark-compare-fail=mean:5%


def conv_model(channels: int = 32, size: int = 56) -> onnx.ModelProto:
    """Conv-Relu-Conv on a 1xCxHxW input; seeded weights."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1, f"w{i}")
        for i in range(2)
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w1"], ["y"], pads=[1, 1, 1, 1]),
    ]
    shape = [1, channels, size, size]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def slowed(run, fraction: float):
    """`run` plus a busy-wait of `fraction` of the call's own measured time (a proportional
    slowdown that follows the machine's noise instead of adding a fixed constant)."""
    clock = time.perf_counter

    def run_slowed():
        start = clock()
        run()
        end = start + (clock() - start) * (1.0 + fraction)
        while clock() < end:
            pass

    return run_slowed


def pytest_benchmark_fails(baseline: tuple[float, ...], current: tuple[float, ...]) -> bool:
    return bool(PYTEST_BENCHMARK_RULE.fails(summarize(current).as_dict(), summarize(baseline).as_dict()))


def rate(flags: list[bool]) -> str:
    k, n = sum(flags), len(flags)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95)
    return f"{k:4d}/{n} = {k / n:6.1%}  (95% CI {ci.low:.1%}..{ci.high:.1%})"


def collect(run, iterations: int) -> tuple[list, list, list]:
    plain, again, slow = [], [], []
    run_slow = slowed(run, SLOWDOWN)
    for _ in range(iterations):
        plain.append(measure_latency(run).seconds)
        again.append(measure_latency(run).seconds)
        slow.append(measure_latency(run_slow).seconds)
    return plain, again, slow


def regression_flags(pairs, rule: LatencyRule) -> tuple[list[bool], list[bool]]:
    ours = [decide_latency(b, c, rule=rule).verdict == "regression" for b, c in pairs]
    theirs = [pytest_benchmark_fails(b, c) for b, c in pairs]
    return ours, theirs


def timing_overhead(session, feed, *, calls: int = 300, repeats: int = 15) -> tuple[float, float, float]:
    """Median over `repeats` of (measure_latency wall time / bare loop wall time) - 1, and the
    bare loop's and measure_latency's per-call wall time in seconds."""
    run = functools.partial(session.run, None, feed)
    ratios, bare_times, ours_times = [], [], []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            session.run(None, feed)
        bare = time.perf_counter_ns() - start
        start = time.perf_counter_ns()
        measure_latency(run, warmup=0, rounds=calls)
        ours = time.perf_counter_ns() - start
        ratios.append(ours / bare)
        bare_times.append(bare / calls / 1e9)
        ours_times.append(ours / calls / 1e9)
    return statistics.median(ratios) - 1.0, statistics.median(bare_times), statistics.median(ours_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()

    session = create_session(conv_model(), optimized=True, threads=1)
    feed = {"x": np.random.default_rng(1).standard_normal((1, 32, 56, 56)).astype(np.float32)}
    run = functools.partial(session.run, None, feed)
    measure_latency(run, warmup=50, rounds=200)  # settle caches and ORT's arena before anything counts

    started = time.perf_counter()
    plain, again, slow = collect(run, args.iterations)
    collected = time.perf_counter() - started
    n = args.iterations
    rounds = len(plain[0])
    medians = [statistics.median(s) for s in plain]
    print(
        f"model: Conv-Relu-Conv 1x32x56x56, ORT CPU 1 thread; per-call median {statistics.median(medians) * 1e6:.1f} us "
        f"(set medians {min(medians) * 1e6:.1f}..{max(medians) * 1e6:.1f} us)"
    )
    print(f"{n} iterations x 3 fresh sample sets of {rounds} rounds (+10 warm-up) in {collected:.0f} s; rule: {LatencyRule()}")

    rule = LatencyRule()
    back_to_back = [(a, b) if i % 2 == 0 else (b, a) for i, (a, b) in enumerate(zip(plain, again))]
    separated = [(plain[(i + n // 2) % n], again[i]) for i in range(n)]
    detection = list(zip(plain, slow))
    for title, pairs in [
        ("A/A back-to-back   (false alarms)", back_to_back),
        ("A/A time-separated (false alarms)", separated),
        ("10% slowdown       (detections)  ", detection),
    ]:
        ours, theirs = regression_flags(pairs, rule)
        print(f"{title}  ours: {rate(ours)}   pytest-benchmark mean:5%: {rate(theirs)}")
    ratios = [statistics.median(s) / statistics.median(p) for p, s in detection]
    print(
        f"injected slowdown, measured median ratio: median {statistics.median(ratios):.3f}, "
        f"min {min(ratios):.3f}, max {max(ratios):.3f}"
    )

    overhead, bare, ours = timing_overhead(session, feed)
    print(
        f"timing overhead: measure_latency {ours * 1e6:.2f} us/call vs bare session.run loop {bare * 1e6:.2f} us/call "
        f"-> {overhead:+.2%} (median of 15 alternated runs of 300 calls)"
    )


if __name__ == "__main__":
    main()
