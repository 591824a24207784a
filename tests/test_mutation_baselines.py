"""Baseline decisions (baseline.py, pytest_plugin/baselines.py) that hand-made mutations showed no
other test could tell apart; each test names the mutation it kills."""

from __future__ import annotations

import json
import math

import numpy as np
import scipy.stats  # noqa: F401  (see test_baseline_checks.py: pytester and scipy's C extensions)
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import parse, save

from onnx2trt_check import baseline as store

# ---------------------------------------------------------------------- the Mann-Whitney latency rule


def _p_slower(current: np.ndarray, baseline: np.ndarray) -> float:
    """One-sided p of 'current is stochastically greater', by hand: the normal approximation with
    continuity correction that scipy's mannwhitneyu uses for two samples over 8 without ties."""
    n1, n2 = len(current), len(baseline)
    ranks = np.empty(n1 + n2)
    ranks[np.argsort(np.concatenate([current, baseline]))] = np.arange(1, n1 + n2 + 1)
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    sigma = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return 0.5 * math.erfc((u1 - n1 * n2 / 2 - 0.5) / sigma / math.sqrt(2))


@settings(max_examples=200, deadline=None)
@given(n1=st.integers(20, 40), n2=st.integers(20, 40), shift=st.floats(0.0, 0.12), seed=st.integers(0, 2**32 - 1))
def test_a_latency_regression_is_a_one_sided_test_at_alpha(n1, n2, shift, seed):
    # Slower only by the one-sided p (p of 'greater' below alpha): a two-sided p is twice as large
    # and misses every slowdown whose one-sided p lies in [alpha/2, alpha).
    rng = np.random.default_rng(seed)
    baseline, current = rng.normal(1.0, 0.1, n2), rng.normal(1.0 + shift, 0.1, n1)
    p = _p_slower(current, baseline)
    if abs(p - 0.05) < 1e-9:
        return  # on the boundary the rounding of either computation decides
    rule = store.LatencyRule(alpha=0.05, max_ratio=1.0, min_samples=20)
    decision = store.decide_latency(list(baseline), list(current), rule=rule)
    slower = p < 0.05 and np.median(current) > np.median(baseline)
    assert (decision.verdict == "regression") == slower, (p, decision.reason)


def test_a_slowdown_of_one_sided_p_between_alpha_over_two_and_alpha_is_a_regression():
    baseline = np.linspace(1.0, 2.0, 30)
    current = baseline + 0.15  # one-sided p 0.033, two-sided 0.066
    assert 0.025 < _p_slower(current, baseline) < 0.05
    decision = store.decide_latency(list(baseline), list(current), rule=store.LatencyRule(alpha=0.05, max_ratio=1.0))
    assert decision.verdict == "regression"


# ------------------------------------------------------------------------------- the pytest face

EXACT_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }
"""
ONLY = ("--target", "ort", "-k", "target or latency or baseline")


def _run(pytester, *args):
    result = pytester.runpytest_inprocess("--model", "m.onnx", *ONLY, "--report-json", "r.json", "--baseline-dir", "bl", *args)
    families = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]
    return result, {f"{fam}::{name}": c["outcome"] for fam, f in families.items() for name, c in f["checks"].items()}


def test_an_exact_target_records_zero_errors_in_its_baseline(pytester):
    # A Relu runs bit-exact on ORT: max_abs and mean_abs are 0.0, figures like any other (a
    # truthiness test instead of `is not None` dropped them, and the next run then failed on
    # "figures missing" against a correct baseline, or a baseline without them gated nothing).
    save(parse(EXACT_MODEL), pytester.path / "m.onnx")
    _run(pytester, "--baseline-update")
    (path,) = sorted((pytester.path / "bl").glob("*.json"))
    recorded = store.load_baseline(path).accuracy["y"]
    assert recorded == {"max_abs": 0.0, "mean_abs": 0.0, "cosine": 1.0, "sqnr_db": math.inf, "top1": 1.0}
    result, outcomes = _run(pytester)
    assert outcomes["baseline[ort]::accuracy"] == "passed"


def test_too_few_latency_samples_are_never_recorded_as_a_baseline(pytester):
    # 5 rounds against min_samples 20: the Mann-Whitney rule decides nothing. Recorded, such a
    # baseline skipped every later latency comparison (a green gate); now a usage error
    # (tests/test_gate13_latency_samples.py: a file of too few samples fails).
    save(parse(EXACT_MODEL), pytester.path / "m.onnx")
    fast = ("--latency", "--latency-rounds", "5", "--latency-warmup", "0")
    result = pytester.runpytest_inprocess("--model", "m.onnx", *ONLY, "--baseline-dir", "bl", *fast, "--baseline-update")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--latency-rounds 5 with a baseline folder*"])


@given(st.sampled_from(["top5", "f1", "map50"]), st.floats(0.2, 0.9))
def test_every_task_figure_is_gated_by_the_task_margin(metric, value):
    # Task figures (top-5 against labels, a user metric) have no entry in the per-output margins;
    # judged by those they were "skipped" and a 10-point drop passed.
    (decision,) = store.compare_accuracy({store.TASK_KEY: {metric: value}}, {store.TASK_KEY: {metric: value - 0.1}})
    assert decision.verdict == "regression"
