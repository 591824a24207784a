"""`quantize` printed "top-1 agreement 83.3% (floor: ... top-1 >= 95%)" and then "wrote": true by
the rule that fewer rows than one disagreement needs still allow one (compare.allowed_disagreements),
but the line read as a pass below its own floor. The floor now says so, and the agreement its rows."""

import numpy as np
import pytest

from onnx2trt_check.compare import Tolerance, compare_output
from onnx2trt_check.quant.verify import Int8Verdict


def _verdict(rows: int, flipped: int) -> Int8Verdict:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((rows, 4)).astype(np.float32) + np.eye(4, dtype=np.float32)[np.arange(rows) % 4] * 10
    target = reference.copy()
    target[:flipped] = reference[:flipped][:, ::-1]  # another class wins on those rows
    floor = Tolerance(atol=None, rtol=None, min_top1=0.95)  # the top-1 floor alone
    stats = compare_output("logits", [reference], [target], floor)
    return Int8Verdict({"logits": stats}, [] if stats.passed else ["failed"], floors={"logits": floor})


@pytest.mark.parametrize("rows, flipped, passed, text", [
    (6, 1, True, "top-1 >= 95%, at most 1 of 6 row(s) disagreeing: too few rows for the rate"),
    (6, 2, False, "top-1 >= 95%, at most 1 of 6 row(s) disagreeing: too few rows for the rate"),
    (40, 2, True, "top-1 >= 95%"),
    (40, 3, False, "top-1 >= 95%"),
])
def test_the_floor_names_the_allowance_only_where_the_rate_allows_less_than_one_row(rows, flipped, passed, text):
    verdict = _verdict(rows, flipped)
    assert verdict.passed is passed
    assert verdict.floor_text("logits") == text
    assert verdict.figures()["logits"]["rows"] == rows


def test_an_output_without_class_scores_is_not_said_to_be_held_to_top1():
    # A decoder's [B, T, V] logits get no top-1 figure; its floor read "top-1 >= 95%" all the same.
    logits = np.random.default_rng(0).standard_normal((1, 6, 10)).astype(np.float32)
    floor = Tolerance(atol=None, rtol=None, min_sqnr_db=20.0, min_top1=0.95)
    verdict = Int8Verdict({"logits": compare_output("logits", [logits], [logits], floor)}, [], floors={"logits": floor})
    assert verdict.floor_text("logits") == "SQNR >= 20 dB"
