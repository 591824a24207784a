"""Latency sampling (bench.measure_latency) and its statistics (bench.summarize)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check import bench
from onnx2trt_check.errors import ConfigError

latencies = st.lists(st.floats(min_value=1e-7, max_value=1.0, allow_nan=False), min_size=1, max_size=200)


@given(latencies)
def test_summary_matches_numpy(data):
    stats = bench.summarize(data)
    array = np.asarray(data)
    assert stats.rounds == len(data)
    assert stats.min == array.min() and stats.max == array.max()
    assert stats.median == pytest.approx(np.median(array), rel=1e-12)
    assert stats.mean == pytest.approx(array.mean(), rel=1e-9)
    assert stats.stddev == pytest.approx(array.std(ddof=1) if len(data) > 1 else 0.0, rel=1e-6, abs=1e-15)
    assert stats.p90 == pytest.approx(np.percentile(array, 90), rel=1e-12)
    assert stats.p99 == pytest.approx(np.percentile(array, 99), rel=1e-12)
    assert stats.total == pytest.approx(array.sum(), rel=1e-9)
    assert stats.ops == pytest.approx(len(data) / array.sum(), rel=1e-9)


@given(latencies)
def test_summary_order_statistics_are_ordered(data):
    s = bench.summarize(bench.LatencySamples(tuple(data)))
    tolerance = 1e-15  # interpolation may round by one ulp
    assert s.min <= s.q1 + tolerance and s.q1 <= s.median + tolerance and s.median <= s.q3 + tolerance
    assert s.median <= s.p90 + tolerance <= s.p99 + 2 * tolerance and s.p99 <= s.max + tolerance
    assert s.iqr == pytest.approx(s.q3 - s.q1)


def test_summary_has_pytest_benchmark_fields():
    from pytest_benchmark.stats import Stats

    fields = bench.summarize([1.0, 2.0, 3.0]).as_dict()
    assert set(Stats.fields) <= set(fields) and {"p90", "p99"} <= set(fields)


def test_summary_of_nothing_is_misuse():
    with pytest.raises(ConfigError, match="no latency samples"):
        bench.summarize([])


class FakeClock:
    """perf_counter_ns that only moves when the timed call says so: samples are then exact."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=50), st.integers(0, 5))
def test_samples_are_exactly_the_call_durations(durations_ns, warmup):
    clock = FakeClock()
    planned = iter([0] * warmup + durations_ns)

    def run_once():
        clock.now += next(planned)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "perf_counter_ns", clock)
        samples = bench.measure_latency(run_once, warmup=warmup, rounds=len(durations_ns), max_time_s=1e9)
    assert samples.seconds == tuple(ns / 1e9 for ns in durations_ns)
    assert samples.warmup == warmup


def test_warmup_and_rounds_call_counts_and_sync_order():
    events = []
    samples = bench.measure_latency(lambda: events.append("run"), warmup=3, rounds=7, sync=lambda: events.append("sync"))
    assert len(samples) == 7
    assert events == ["run", "sync"] * 10
    assert all(s >= 0 for s in samples.seconds)


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_samples_cover_the_call_time():
    samples = bench.measure_latency(lambda: _busy(0.002), warmup=0, rounds=5)
    assert all(s >= 0.002 for s in samples.seconds)


def test_min_time_runs_more_rounds_than_asked():
    samples = bench.measure_latency(lambda: _busy(0.001), warmup=0, rounds=1, min_time_s=0.05)
    assert len(samples) >= 2 and sum(samples.seconds) >= 0.045


def test_max_time_stops_early():
    start = time.perf_counter()
    samples = bench.measure_latency(lambda: _busy(0.001), warmup=0, rounds=10**6, max_time_s=0.05)
    assert 1 <= len(samples) < 10**6
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "options",
    [{"warmup": -1}, {"rounds": 0}, {"min_time_s": -1.0}, {"max_time_s": 0.0}],
)
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        bench.measure_latency(lambda: None, **options)


def test_warmup_stops_at_the_time_cap():
    """redteam14: `--latency-warmup 99999999999999999999` hung the run forever (the timed rounds
    stop at max_time_s, the warm-up did not); the warm-up is bounded by the same cap and the
    samples record how many warm-up calls ran."""
    start = time.perf_counter()
    samples = bench.measure_latency(lambda: _busy(0.001), warmup=10**20, rounds=3, max_time_s=0.05)
    assert time.perf_counter() - start < 1.0
    assert 1 <= samples.warmup < 10**20
    assert len(samples) >= 1
