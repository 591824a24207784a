"""review17: under a profile with an agreement floor (int8 95%, fp16 99%) an integer output is judged by
its agreement alone, and fewer rows than one disagreement needs still allowed one. With one element
(a batch-1 argmax label on one feed, a 0-d count) that one could be anything: label 3 given as 7 passed
int8 and fp16 with nothing said (at 83f95fa fp16's atol and int8's SQNR failed it). No floor now lets
every row disagree where it is the only rule; class scores keep their one row's slack (their SQNR and
cosine floors still hold, and an fp16 embedding [1, 512] would be judged by its argmax)."""

import numpy as np
import pytest

from onnx2trt_check.agreement import allowed_disagreements
from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES


@pytest.mark.parametrize("profile", ["int8", "fp16"])
@pytest.mark.parametrize("reference, target", [([np.array([3])], [np.array([7])]), ([np.array(5)], [np.array(0)]),
                                               ([np.array([[True]])], [np.array([[False]])])])
def test_a_lone_discrete_element_that_changed_fails(profile, reference, target):
    stats = compare_output("label", reference, target, PRECISION_PROFILES[profile])
    assert not stats.passed
    assert "0 of 1" not in "; ".join(stats.problems) and "1 of 1 elements differ" in "; ".join(stats.problems)


@pytest.mark.parametrize("profile", ["int8", "fp16"])
def test_a_lone_discrete_element_that_agrees_passes(profile):
    assert compare_output("label", [np.array([3])], [np.array([3])], PRECISION_PROFILES[profile]).passed


def test_two_rows_still_allow_one():
    assert allowed_disagreements(0.95, 1, alone=True) == 0
    assert allowed_disagreements(0.95, 2, alone=True) == 1
    assert allowed_disagreements(0.95, 1) == 1


def test_the_floor_text_of_a_lone_label_allows_none():
    from onnx2trt_check.quant.verify import Int8Verdict
    floor = PRECISION_PROFILES["int8"]
    verdict = Int8Verdict({"label": compare_output("label", [np.array([3])], [np.array([3])], floor)}, [], floors={"label": floor})
    assert verdict.floor_text("label") == "agreement >= 95%"
