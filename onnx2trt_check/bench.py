"""Latency sampling and its statistics.

`measure_latency` times one call per round and keeps every raw sample (seconds), because the
regression decision in baseline.py is a rank test over the raw samples, not a comparison of means.
`summarize` reuses pytest-benchmark's `Stats` (same field names, same JSON shape as the `stats`
block of a pytest-benchmark JSON file) so users read one vocabulary, and adds p90/p99, which
pytest-benchmark does not compute.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
from pytest_benchmark.stats import Stats

from .errors import ConfigError

_NS_PER_S = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class LatencySamples:
    """Raw per-call latencies in seconds, in the order they were measured."""

    seconds: tuple[float, ...]
    warmup: int = 0

    def __len__(self) -> int:
        return len(self.seconds)


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """pytest-benchmark's `Stats.fields` (same names, same meaning) plus p90 and p99 in seconds.

    q1/q3 follow pytest-benchmark's quartile method; p90/p99 are numpy's linear percentiles.
    """

    min: float
    max: float
    mean: float
    stddev: float
    rounds: int
    median: float
    iqr: float
    q1: float
    q3: float
    iqr_outliers: int
    stddev_outliers: int
    outliers: str
    ld15iqr: float
    hd15iqr: float
    ops: float
    total: float
    p90: float
    p99: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def measure_latency(
    run_once: Callable[[], object],
    *,
    warmup: int = 10,
    rounds: int = 100,
    min_time_s: float = 0.0,
    max_time_s: float = 60.0,
    sync: Callable[[], object] | None = None,
) -> LatencySamples:
    """Call `run_once` `warmup` times untimed, then time one call per round.

    Timing stops once at least `rounds` rounds ran and at least `min_time_s` seconds of timed
    rounds passed, or as soon as `max_time_s` seconds passed (so a very slow model may return
    fewer than `rounds` samples; the regression decision then skips with that reason). The
    warm-up stops at the same cap (`--latency-warmup 10**20` hung the run); the samples record
    how many warm-up calls ran.
    `sync` runs after every call inside the timed region, for devices whose calls return before
    the work is done (CUDA). Defaults: 10 warm-up calls, 100 rounds, no minimum time, 60 s cap.
    """
    _check_options(warmup=warmup, rounds=rounds, min_time_s=min_time_s, max_time_s=max_time_s)
    call = run_once if sync is None else _with_sync(run_once, sync)
    max_ns = int(max_time_s * _NS_PER_S)
    warmed = _warm_up(call, warmup, max_ns)
    durations_ns = _timed_rounds(call, rounds, int(min_time_s * _NS_PER_S), max_ns)
    return LatencySamples(tuple(ns / _NS_PER_S for ns in durations_ns), warmup=warmed)


def _warm_up(call: Callable[[], object], warmup: int, max_ns: int) -> int:
    clock = time.perf_counter_ns
    start = clock()
    done = 0
    while done < warmup:
        call()
        done += 1
        if clock() - start >= max_ns:
            break
    return done


def _timed_rounds(call: Callable[[], object], rounds: int, min_ns: int, max_ns: int) -> list[int]:
    # Only clock(), call(), clock() sit between the two clock reads: the stop conditions, the
    # append and the bookkeeping happen outside the timed region. Samples stay integer ns until
    # the end so the loop allocates nothing beyond the list slot.
    clock = time.perf_counter_ns
    durations: list[int] = []
    append = durations.append
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - start
        if elapsed >= max_ns or (len(durations) >= rounds and elapsed >= min_ns):
            return durations


def _with_sync(run_once: Callable[[], object], sync: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        run_once()
        sync()

    return call


def _check_options(*, warmup: int, rounds: int, min_time_s: float, max_time_s: float) -> None:
    if warmup < 0:
        raise ConfigError(f"warmup={warmup} is negative; pass warmup >= 0")
    if rounds < 1:
        raise ConfigError(f"rounds={rounds} must be at least 1; pass rounds >= 1")
    if min_time_s < 0 or max_time_s <= 0:
        raise ConfigError(f"min_time_s={min_time_s}, max_time_s={max_time_s}; pass min_time_s >= 0 and max_time_s > 0")


def summarize(samples: LatencySamples | Sequence[float]) -> LatencyStats:
    """Statistics of the raw samples (seconds); see `LatencyStats` for the fields."""
    data = list(samples.seconds if isinstance(samples, LatencySamples) else samples)
    if not data:
        raise ConfigError("no latency samples to summarize; measure at least one round")
    stats = Stats()
    stats.data = data
    p90, p99 = np.percentile(np.asarray(data, dtype=np.float64), [90, 99])
    return LatencyStats(**stats.as_dict(), p90=float(p90), p99=float(p99))
