"""gate13: two SQNR figures above the 80 dB ceiling (131.3 dB recorded, 133.2 dB now) were judged
unchanged, rightly, but the reason printed in the decision table and the JSON report was
"identical to the baseline", which they are not."""

from __future__ import annotations

from onnx2trt_check import baseline as store


def test_sqnr_above_the_ceiling_is_not_called_identical():
    decision = store.decide_accuracy("sqnr_db", 131.3, 133.2)
    assert decision.verdict == "unchanged"
    assert "identical" not in decision.reason
    assert "80 dB" in decision.reason
    assert (decision.baseline, decision.current) == (131.3, 133.2)  # the figures shown are the measured ones


def test_equal_figures_are_still_identical_and_a_fall_below_the_ceiling_still_counts():
    assert store.decide_accuracy("sqnr_db", 131.3, 131.3).reason == "identical to the baseline"
    assert store.decide_accuracy("sqnr_db", 131.3, 70.0).verdict == "regression"


def test_a_nan_beside_a_figure_above_the_ceiling_is_still_a_regression():
    assert store.decide_accuracy("sqnr_db", 131.3, float("nan")).verdict == "regression"
    assert store.decide_accuracy("sqnr_db", float("nan"), 131.3).verdict == "missing"
