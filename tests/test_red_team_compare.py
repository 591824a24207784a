"""Red-team findings on the accuracy verdict (compare.py) and the transforms' equivalence check
(transforms/verify.py): passes that claimed agreement where there was none."""

import json

import numpy as np
import onnx
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.compare import Tolerance, compare_output
from onnx2trt_check.transforms.verify import check_equivalence

FP16 = Tolerance(atol=5e-2, rtol=1e-2)  # the fp16 profile's element-wise tolerance
FP32 = Tolerance(atol=1e-4, rtol=1e-4)


def test_a_token_id_off_by_nine_fails_under_the_fp16_tolerance():
    # An ArgMax over 1000 logits in fp16 storage picks token 990 instead of 999 (a near-tie):
    # |990 - 999| = 9 <= 0.05 + 0.01 * 999 passed as "max abs 9" before.
    stats = compare_output("token", [np.array([999], np.int64)], [np.array([990], np.int64)], FP16)
    assert not stats.passed and stats.mismatches == 1


@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), elements=st.integers(0, 2**40)),
       st.data(), st.sampled_from([FP16, FP32]), st.sampled_from([np.int64, np.int32, np.uint16, np.bool_]))
def test_integer_and_bool_outputs_pass_only_when_equal(ref, data, tolerance, dtype):
    ref = ref.astype(dtype) if dtype is not np.bool_ else ref % 2 == 1
    index = data.draw(st.integers(0, ref.size - 1))
    got = ref.copy()
    if dtype is np.bool_:
        got.flat[index] = not got.flat[index]
    else:
        got.flat[index] = got.flat[index] - 1 if got.flat[index] > 0 else got.flat[index] + 1
    assert compare_output("y", [ref], [ref.copy()], tolerance).passed
    assert not compare_output("y", [ref], [got], tolerance).passed


def test_an_all_nan_output_is_no_agreement():
    nan = np.full((2, 3), np.nan, np.float32)
    stats = compare_output("y", [nan], [nan.copy()], FP32)
    assert not stats.passed and "no finite value" in stats.problems[0]
    # A NaN at the same place among finite values stays no mismatch (the reference item reports it).
    partial = np.array([[np.nan, 1.0, 2.0]], np.float32)
    assert compare_output("y", [partial], [partial.copy()], FP32).passed


SQRT = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x) => (float[3] y) { y = Sqrt(x) }""")
NEG_SQRT = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x) => (float[3] y) { n = Neg(x)\n y = Sqrt(n) }""")


def test_equivalence_over_an_all_nan_output_is_not_claimed():
    # Sqrt and Sqrt(Neg) differ everywhere a number exists; on negative feeds both give only NaN.
    result = check_equivalence(SQRT, NEG_SQRT, [{"x": np.array([-1.0, -4.0, -9.0], np.float32)}])
    assert not result.passed and "no finite value" in result.outputs[0].note


def test_pytest_model_fails_the_targets_of_a_model_whose_outputs_are_all_nan(pytester):
    # Selecting the targets alone (-k target) left only "PASSED, max abs 0, SQNR inf dB" items.
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3] x) => (float[2,3] z) { a = Abs(x)\n n = Neg(a)\n m = Sub(n, a)\n z = Sqrt(m) }""")
    onnx.save(model, pytester.path / "nan.onnx")
    result = pytester.runpytest_inprocess("--model", "nan.onnx", "--target", "ort", "-k", "target", "--report-json", "r.json")
    counts = json.loads((pytester.path / "r.json").read_text())["counts"]
    assert counts["failed"] == 1 and counts["passed"] == 0, result.outlines
