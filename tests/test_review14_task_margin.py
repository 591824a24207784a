"""review14: the baseline's task margin became --max-metric-drop where given. That option is the budget
against the float reference (README's pruned sample: --max-metric-drop 0.05), so the regression gate
against the recorded figure loosened from one point to five: a top-1 that fell 4 points since the
baseline passed both the task item and the gate. The margin is the smaller of the two: a figure in
small units (gate13's -rmse) still gets --max-metric-drop, a 0..1 accuracy keeps its one point."""

from __future__ import annotations

from onnx2trt_check import baseline as store


def test_a_max_metric_drop_budget_does_not_loosen_the_regression_gate():
    baseline, current = {store.TASK_KEY: {"top1": 0.9667}}, {store.TASK_KEY: {"top1": 0.9267}}
    (decision,) = store.compare_accuracy(baseline, current, task=store.task_margin(0.05))
    assert decision.verdict == "regression", decision.reason


def test_a_small_max_metric_drop_still_tightens_it():
    baseline, current = {store.TASK_KEY: {"neg_rmse": -0.004}}, {store.TASK_KEY: {"neg_rmse": -0.009}}
    (decision,) = store.compare_accuracy(baseline, current, task=store.task_margin(0.001))
    assert decision.verdict == "regression", decision.reason
