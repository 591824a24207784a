"""gate13: findings left open by the helper and fixed since: a baseline block of another model kept under the
new model's sha256, and a task figure in small units judged by the fixed 0.01 margin."""

from __future__ import annotations

from onnx2trt_check import baseline as store
from onnx2trt_check.bench import LatencySamples
from onnx2trt_check.pytest_plugin.baseline_session import merged_baseline


def test_a_task_figure_in_small_units_that_doubles_its_error_is_a_regression_under_max_metric_drop():
    """The README's own advice, "return -rmse for an error": an RMSE of 0.004 grown to 0.009 moved
    less than the default 0.01 and passed; --max-metric-drop gives the margin in the figure's unit."""
    baseline, current = {store.TASK_KEY: {"neg_rmse": -0.004}}, {store.TASK_KEY: {"neg_rmse": -0.009}}
    (decision,) = store.compare_accuracy(baseline, current, task=store.task_margin(0.001))
    assert decision.verdict == "regression", decision.reason
    (within,) = store.compare_accuracy(baseline, {store.TASK_KEY: {"neg_rmse": -0.0045}}, task=store.task_margin(0.001))
    assert within.verdict != "regression", within.reason


def test_a_block_measured_on_another_model_is_not_kept_under_the_new_models_sha():
    old = store.Baseline("m.onnx", "old-sha", "ort", {}, {"cpu": "c"}, {}, {"y": {"max_abs": 1.0}}, LatencySamples((0.5,) * 20, 1))
    part = {"model_name": "m.onnx", "model_sha256": "new-sha", "target": "ort", "build_options": {}, "environment": {"cpu": "c"},
            "latency": {"data": [0.25] * 20, "warmup": 1}}
    merged = merged_baseline(old, [part], {})
    assert merged.model_sha256 == "new-sha"
    assert merged.accuracy == {}, "the accuracy block of model 'old-sha' is filed under 'new-sha'"
