"""gate13: findings left open (strict xfails: each passes once its proposed fix lands)."""

from __future__ import annotations

import pytest

from onnx2trt_check import baseline as store
from onnx2trt_check.bench import LatencySamples
from onnx2trt_check.pytest_plugin.baseline_session import merged_baseline


@pytest.mark.xfail(strict=True, reason="open: a task figure moves by the absolute TASK_MARGIN 0.01 whatever its unit; the README's own "
                   "'return -rmse for an error' then lets an RMSE of 0.004 grow to 0.009 (2.25x) pass as unchanged. Proposed: "
                   "--max-metric-drop (in the figure's unit) as the baseline's task margin when given, and the margin documented")
def test_a_task_figure_in_small_units_that_doubles_its_error_is_a_regression():
    (decision,) = store.compare_accuracy({store.TASK_KEY: {"neg_rmse": -0.004}}, {store.TASK_KEY: {"neg_rmse": -0.009}})
    assert decision.verdict == "regression", decision.reason


def test_a_block_measured_on_another_model_is_not_kept_under_the_new_models_sha():
    old = store.Baseline("m.onnx", "old-sha", "ort", {}, {"cpu": "c"}, {}, {"y": {"max_abs": 1.0}}, LatencySamples((0.5,) * 20, 1))
    part = {"model_name": "m.onnx", "model_sha256": "new-sha", "target": "ort", "build_options": {}, "environment": {"cpu": "c"},
            "latency": {"data": [0.25] * 20, "warmup": 1}}
    merged = merged_baseline(old, [part], {})
    assert merged.model_sha256 == "new-sha"
    assert merged.accuracy == {}, "the accuracy block of model 'old-sha' is filed under 'new-sha'"
