"""Calibration statistics and range methods: bounds, monotonicity, TensorRT's entropy search and the
mse search checked candidate by candidate against literal transcriptions of pytorch-quantization's
loops, and ORT's calibrators as oracles."""

import math
from collections import Counter

import numpy as np
import onnx
import pytest
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnxruntime.quantization.calibrate import HistogramCollector

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.quant.calibrate import NUM_BINS, TensorStats, collect_statistics
from onnx2trt_check.quant.qdq_math import fake_quantize, symmetric_scale
from onnx2trt_check.quant.ranges import (
    METHODS,
    _level_starts,
    amax_entropy,
    amax_mse,
    amax_percentile,
    compute_amax,
    entropy_divergences,
    mse_errors,
)


def _stats_of(*batches) -> TensorStats:
    stats = TensorStats()
    for batch in batches:
        stats.update(np.asarray(batch, np.float32))
    return stats


def _heavy_tailed(seed: int, size: int = 20000) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(2, size=size).astype(np.float32)


activations = hnp.arrays(
    np.float32, st.integers(16, 400), elements=st.floats(-1e3, 1e3, width=32)
).filter(lambda a: np.any(a != 0))


def _histogram_stats(counts: np.ndarray, width: float = 0.01) -> TensorStats:
    return TensorStats(amax=len(counts) * width, counts=counts.astype(np.int64), width=width)


# ---------------------------------------------------------------- streaming statistics


def test_single_batch_histogram_is_numpys_2048_bins_over_abs():
    x = _heavy_tailed(0, 5000)
    stats = _stats_of(x)
    expected, _ = np.histogram(np.abs(x.astype(np.float64)), bins=NUM_BINS, range=(0, np.abs(x).max()))
    assert stats.amax == np.abs(x).max() and len(stats.counts) == NUM_BINS
    # the same counts but where a value lies within float rounding of a bin edge
    assert np.abs(stats.counts - expected).sum() <= 2 and stats.counts.sum() == x.size


def _python_bins(batches) -> tuple[float, Counter]:
    """The bin of every |x| by the definition, one Python float at a time: the width is the first
    nonzero batch's max over 2048, doubled (bins k -> k // 2) while a later max would need more
    than 8192 bins; a value goes to bin floor(|x| / width), or to the last bin of the histogram as
    it is after its batch when that quotient is its top edge."""
    width, bins, found = None, 0, Counter()
    for batch in batches:
        values = [abs(float(v)) for v in batch]
        if width is None and max(values) > 0:
            width, bins = max(values) / NUM_BINS, NUM_BINS
        if width is None:
            found[0] += len(values)
            continue
        while math.ceil(max(values) / width) > 4 * NUM_BINS:
            width, bins, found = width * 2, (bins + 1) // 2, sum((Counter({k // 2: c}) for k, c in found.items()), Counter())
        bins = max(bins, math.ceil(max(values) / width))
        found.update(min(math.floor(v / width), bins - 1) for v in values)
    return width, found
@settings(max_examples=25)
@given(batches=st.lists(hnp.arrays(np.float32, st.integers(1, 60), elements=st.floats(-1e4, 1e4, width=32)), min_size=1, max_size=4),
       stretch=st.sampled_from([1.0, 3.0, 1e3]))
def test_streamed_histogram_counts_each_value_in_the_bin_of_its_quotient(batches, stretch):
    batches = [b * np.float32(stretch ** i) for i, b in enumerate(batches)]  # later batches reach further
    assume(any(np.any(b != 0) for b in batches))
    stats = _stats_of(*batches)
    width, expected = _python_bins(batches)
    assert stats.width == width
    assert {k: int(c) for k, c in enumerate(stats.counts) if c} == dict(expected)


@given(batches=st.lists(activations, min_size=1, max_size=4))
def test_streamed_statistics_count_everything_and_track_the_max(batches):
    stats = _stats_of(*batches)
    assert stats.counts.sum() == sum(b.size for b in batches)
    assert stats.amax == max(float(np.abs(b).max()) for b in batches)
    assert stats.edges[-1] >= stats.amax


def test_zeros_before_the_first_nonzero_batch_land_in_bin_zero():
    stats = _stats_of(np.zeros(10), [0.0, 1.0, -2.0])
    assert stats.counts[0] == 11 and stats.counts.sum() == 13


def test_a_far_larger_later_batch_grows_then_merges_bins_exactly():
    stats = _stats_of([1.0, 0.5], [100.0, 0.25])
    assert stats.counts.sum() == 4 and stats.amax == 100.0
    assert NUM_BINS <= len(stats.counts) <= 4 * NUM_BINS
    assert stats.edges[-1] >= 100.0


def test_nan_activations_are_rejected():
    with pytest.raises(InputDataError, match="NaN"):
        _stats_of([1.0, np.nan])


# ---------------------------------------------------------------- range methods


@settings(max_examples=10)
@given(batches=st.lists(activations, min_size=1, max_size=3))
def test_no_method_exceeds_max_abs(batches):
    stats = _stats_of(*batches)
    for method in METHODS:
        amax = compute_amax(stats, method, percentile=99.9)
        assert 0.0 <= amax <= stats.amax, method


@given(x=activations, p=st.floats(50.0, 100.0), q=st.floats(50.0, 100.0))
def test_percentile_grows_with_p(x, p, q):
    stats = _stats_of(x)
    low, high = sorted((p, q))
    assert amax_percentile(stats, low) <= amax_percentile(stats, high)


def test_percentile_cuts_the_tail_of_a_heavy_tailed_distribution():
    stats = _stats_of(_heavy_tailed(1))
    p9999, p99 = amax_percentile(stats, 99.99), amax_percentile(stats, 99.0)
    true_p99 = np.percentile(np.abs(_heavy_tailed(1)), 99.0)
    assert p99 < p9999 < stats.amax
    assert abs(p99 - true_p99) <= 2 * stats.width


def test_percentile_matches_onnxruntime_percentile_calibrator(capsys):
    # ORT bins |x| over [min|x|, max|x|]; a 0 in the data makes that [0, max] like ours.
    x = np.concatenate([[0.0], _heavy_tailed(2)]).astype(np.float32)
    collector = HistogramCollector("percentile", True, NUM_BINS, 128, 99.9, "same")
    collector.collect({"t": [x]})
    ort_amax = float(collector.compute_collection_result()["t"][1])
    stats = _stats_of(x)
    assert amax_percentile(stats, 99.9) == pytest.approx(ort_amax, abs=1.01 * stats.width)


@settings(max_examples=8)
@given(x=activations)
def test_entropy_threshold_lies_in_zero_to_max(x):
    stats = _stats_of(x)
    assert 0.0 < amax_entropy(stats) <= stats.amax


def _reference_entropy_amax(calib_hist, calib_bin_edges, num_bits=8, stride=1, start_bin=128):
    """pytorch-quantization's `_compute_amax_entropy` (NVIDIA/TensorRT, tools/pytorch-quantization/
    pytorch_quantization/calib/histogram.py), transcribed without torch as the oracle."""
    bins = np.array(calib_hist[:], dtype=np.int64)
    bins[0] = bins[1]
    divergences, nbins = [], 1 << (num_bits - 1)
    new_density_counts = np.zeros(nbins, dtype=np.float64)
    for i in range(start_bin, len(bins) + 1, stride):
        new_density_counts.fill(0)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density_counts[digitized] += bins[idx]
        counter = Counter(digitized_space)
        for key, val in counter.items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i, dtype=np.float64)
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density[idx] = new_density_counts[digitized]
        reference_density = np.array(bins[: len(digitized_space)])
        reference_density[-1] += np.sum(bins[i:])
        divergences.append(scipy.stats.entropy(reference_density, new_density))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return calib_bin_edges[last_argmin * stride + start_bin]


@settings(max_examples=10)
@given(
    counts=hnp.arrays(np.int64, st.integers(130, 260), elements=st.integers(0, 50)),
    tail=st.integers(1, 5),
)
def test_entropy_equals_tensorrts_loop(counts, tail):
    counts[1] = max(counts[1], 1)  # TensorRT copies bin 1 into bin 0; keep the candidate non-empty
    counts[-1] = tail  # the max lies in the last bin, as in a collected histogram
    stats = _histogram_stats(counts)
    assert amax_entropy(stats) == pytest.approx(_reference_entropy_amax(counts, stats.edges), rel=1e-12)


def _reference_divergences(counts: np.ndarray, start_bin: int = 128) -> np.ndarray:
    """The KL divergence of every candidate, by TensorRT's loop body (the transcription above)."""
    bins = np.array(counts, dtype=np.int64)
    bins[0] = bins[1]
    found = []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=129)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        density = np.zeros(128)
        for idx, level in enumerate(digitized_space):
            if level != -1:
                density[level] += bins[idx]
        for key, val in Counter(digitized_space).items():
            if key != -1:
                density[key] /= val
        candidate = np.array([density[level] if level != -1 else 0.0 for level in digitized_space])
        reference = np.array(bins[:i], dtype=np.float64)
        reference[-1] += np.sum(bins[i:])
        found.append(scipy.stats.entropy(reference, candidate) if candidate.any() else np.inf)
    return np.array(found)


@settings(max_examples=15, deadline=None)
@given(counts=hnp.arrays(np.int64, st.integers(128, 300), elements=st.one_of(st.just(0), st.integers(0, 10**6))))
def test_every_entropy_divergence_is_tensorrts(counts):
    assume(counts.sum() > 0)
    candidates, divergences = entropy_divergences(counts)
    expected = _reference_divergences(counts)
    assert list(candidates) == list(range(128, len(counts) + 1))
    assert np.array_equal(np.isinf(divergences), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(divergences[finite], expected[finite], rtol=1e-9, atol=1e-12)


def test_entropy_clips_a_heavy_tail_where_onnxruntimes_default_degenerates_to_max(capsys):
    x = _heavy_tailed(3)
    ort = HistogramCollector("entropy", True, 128, 128, 99.999, "same")  # ORT's defaults
    ort.collect({"t": [x]})
    ort_low, ort_high = (float(v) for v in ort.compute_collection_result()["t"][:2])
    ours = amax_entropy(_stats_of(x))
    # With 128 bins and 128 levels ORT tries one threshold: the whole range, i.e. max calibration.
    assert (ort_low, ort_high) == (float(x.min()), float(x.max()))
    assert ours < 0.5 * min(-ort_low, ort_high)


def _reference_qdq_error(centers: np.ndarray, amax: float) -> np.ndarray:
    # pytorch-quantization's fake_tensor_quant, in float64: round(x * 127 / amax) clamped to [-127, 127].
    return np.clip(np.round(centers * (127.0 / amax)), -127, 127) * (amax / 127.0) - centers


def _reference_mse(centers: np.ndarray, counts: np.ndarray, amax: float) -> float:
    return float(np.sum(_reference_qdq_error(centers, amax) ** 2 * counts))


@settings(max_examples=10)
@given(counts=hnp.arrays(np.int64, st.integers(130, 300), elements=st.integers(0, 1000)))
def test_mse_picks_the_candidate_of_least_error(counts):
    """The chosen amax is the float64 reference's best, up to float32 rounding: amax_mse computes
    the error in float32 as TensorRT's tools do, and each error term (x_q - x) is then off by up
    to a few eps * |x|, so two candidates closer than that are a tie."""
    counts[-1] = max(counts[-1], 1)
    stats = _histogram_stats(counts)
    centers = (stats.edges[1:] + stats.edges[:-1]) / 2
    errors = [_reference_mse(centers, counts, c) for c in centers[128:-1]]
    best = centers[128 + int(np.argmin(errors))]
    chosen = amax_mse(stats)
    rounding = [np.abs(_reference_qdq_error(centers, a)) for a in (best, chosen)]
    slack = 8 * np.finfo(np.float32).eps * float(np.sum(counts * np.abs(centers) * (rounding[0] + rounding[1])))
    assert _reference_mse(centers, counts, chosen) <= min(errors) + slack + 1e-12


@settings(max_examples=15, deadline=None)
@given(counts=hnp.arrays(np.int64, st.integers(129, 400), elements=st.one_of(st.just(0), st.integers(0, 10**6))),
       width=st.floats(1e-6, 1e3))
def test_every_mse_error_is_the_float32_qdq_error_of_the_bin_centers(counts, width):
    """Each candidate's error, against the centers pushed through quantize/dequantize one by one
    (qdq_math, bit-identical to ONNX Runtime) and summed in float64."""
    counts[-1] = max(counts[-1], 1)
    stats = _histogram_stats(counts, width)
    centers = ((stats.edges[1:] + stats.edges[:-1]) / 2).astype(np.float32)
    amax, errors = mse_errors(stats)
    assert np.array_equal(amax, centers[128:])
    for candidate, error in zip(amax, errors):
        exact = fake_quantize(centers, symmetric_scale(candidate)).astype(np.float64) - centers.astype(np.float64)
        expected = float(np.sum(exact ** 2 * counts))
        assert error == pytest.approx(expected, rel=1e-7, abs=1e-9 * float(np.sum(counts * centers.astype(np.float64) ** 2)))


def test_mse_keeps_the_range_of_a_uniform_distribution_and_clips_a_lone_far_outlier():
    uniform = np.random.default_rng(4).uniform(-1, 1, 20000).astype(np.float32)
    assert amax_mse(_stats_of(uniform)) > 0.95
    # A million values in the first 200 bins and one at the top: rounding the body on the full
    # range costs 1e6 * (2048w/127)^2 / 12 ~ 2e7 w^2; clipping the outlier at bin 200 ~ 3.4e6 w^2.
    counts = np.zeros(NUM_BINS, np.int64)
    counts[:200], counts[-1] = 5000, 1
    stats = _histogram_stats(counts)
    assert amax_mse(stats) < 0.25 * stats.amax


def test_unknown_method_and_bad_percentile_are_usage_errors():
    stats = _stats_of([1.0, 2.0])
    with pytest.raises(ConfigError, match="method"):
        compute_amax(stats, "minmax")
    with pytest.raises(ConfigError, match="percentile"):
        amax_percentile(stats, 101.0)


def test_all_zero_tensor_has_zero_range_for_every_method():
    stats = _stats_of(np.zeros(8))
    assert [compute_amax(stats, m) for m in METHODS] == [0.0] * len(METHODS)


# ---------------------------------------------------------------- collection over a model


MODEL = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
g (float[2,3] x) => (float[2,3] y) { r = Relu(x)  y = Neg(r) }""")


def _feeds(count: int):
    rng = np.random.default_rng(6)
    return [{"x": rng.normal(size=(2, 3)).astype(np.float32) * (k + 1)} for k in range(count)]


def test_collect_statistics_over_feeds_matches_numpy():
    feeds = _feeds(5)
    stats = collect_statistics(MODEL, feeds, ["r", "x"])
    assert stats["r"].amax == max(float(np.maximum(f["x"], 0).max()) for f in feeds)
    assert stats["x"].amax == max(float(np.abs(f["x"]).max()) for f in feeds)
    assert stats["r"].counts.sum() == 30


def test_collect_statistics_accepts_a_one_shot_generator():
    stats = collect_statistics(MODEL, (f for f in _feeds(3)), ["r"])
    assert stats["r"].counts.sum() == 18


def test_collect_statistics_misuse():
    with pytest.raises(ConfigError, match="'nope'"):
        collect_statistics(MODEL, _feeds(1), ["nope"])
    with pytest.raises(InputDataError, match="empty"):
        collect_statistics(MODEL, [], ["r"])


def test_progress_goes_to_stderr_only_for_many_batches(capsys):
    collect_statistics(MODEL, _feeds(2), ["r"], progress=True)
    assert capsys.readouterr().err == ""
    collect_statistics(MODEL, _feeds(30), ["r"], progress=True)
    err = capsys.readouterr().err
    assert "calibrating: batch 30/30" in err
    collect_statistics(MODEL, _feeds(30), ["r"], progress=False)
    assert capsys.readouterr().err == ""


def test_the_integer_level_starts_are_tensorrts_linspace_edges_rounded_up():
    candidates = np.arange(1, 40_000)
    expected = np.ceil(np.linspace(0, candidates, num=129, axis=1)).astype(np.int64)
    assert np.array_equal(_level_starts(candidates), expected)
