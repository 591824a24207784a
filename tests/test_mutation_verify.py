"""transforms/verify.py and output-tail recipe verdicts that hand-made mutations showed no other test could tell apart;
each test names the mutation it kills. A wrong "equivalent" lets a broken rewrite into the
optimized model."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.transforms.output_tail import restore
from onnx2trt_check.transforms.verify import compare_runs

int_arrays = hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.integers(-1000, 1000))
float_arrays = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.floats(-100, 100, width=32))


@given(int_arrays, st.data())
def test_one_integer_element_off_is_not_equivalent(ref, data):
    # Integer outputs (indices, ids) must match exactly: not even one element may differ.
    got = ref.copy()
    got.reshape(-1)[data.draw(st.integers(0, ref.size - 1))] += data.draw(st.integers(1, 5))
    result = compare_runs([{"y": ref}], [{"y": got}])
    assert not result.passed and result.outputs[0].mismatched == 1


@given(float_arrays.filter(lambda a: a.ndim >= 2 and a.shape[0] != a.shape[-1]))
def test_an_output_of_another_shape_with_the_same_elements_is_not_equivalent(ref):
    # A rewrite that returns [3, 2] where the model returned [2, 3] changed the function even when
    # the flat elements agree.
    got = ref.reshape(ref.shape[::-1])
    result = compare_runs([{"y": ref}], [{"y": got}])
    assert not result.passed and "shape" in result.outputs[0].note


@given(float_arrays, st.integers(0, 3))
def test_every_output_is_compared_not_only_the_first(ref, broken):
    # Four outputs, one of them off by 1000: whichever it is, the models are not equivalent.
    expected = {f"y{i}": ref for i in range(4)}
    actual = dict(expected) | {f"y{broken}": ref + np.float32(1000)}
    result = compare_runs([expected], [actual])
    assert not result.passed
    assert [e.passed for e in result.outputs] == [i != broken for i in range(4)]


@given(float_arrays.filter(lambda a: a.ndim == 2), st.data())
def test_an_exact_output_recipe_that_does_not_restore_the_old_output_fails(old, data):
    # A transpose recipe moves elements only: the restored output must equal the old one bit for
    # bit, and one element off by any amount is a failure (an exact recipe gets no tolerance).
    new = old.T.copy()
    new.reshape(-1)[data.draw(st.integers(0, new.size - 1))] += np.float32(data.draw(st.sampled_from([1e-3, 1.0, 100.0])))
    assert not restore("y", [{"op": "transpose", "perm": [1, 0]}], [old], [new]).passed
    assert restore("y", [{"op": "transpose", "perm": [1, 0]}], [old], [old.T.copy()]).passed


LINEAR_X2 = {"op": "resize", "mode": "linear", "scales": [2], "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}


@given(st.floats(2.0**-9, 100.0, width=32))
def test_a_linear_recipe_is_held_to_its_rounding_allowance(error):
    # [0, 2] upsampled x2 (asymmetric, by hand): source coordinates 0, 0.5, 1, 1.5 -> 1 (clipped),
    # values 0, 1, 2, 2. The linear allowance is a few ulps of 2: an error of 2**-9 or more fails.
    new = np.array([0.0, 2.0], np.float32)
    assert restore("y", [LINEAR_X2], [np.array([0.0, 1.0, 2.0, 2.0], np.float32)], [new]).passed
    assert not restore("y", [LINEAR_X2], [np.array([0.0, 1.0 + error, 2.0, 2.0], np.float32)], [new]).passed


@given(st.floats(1.0, 100.0), st.floats(1e-6, 1e-5))
def test_explicit_tolerances_replace_the_default(value, relative):
    # Off by 1e-6..1e-5 relative: inside the default float32 rtol (sqrt(eps), 3.5e-4), outside an
    # explicit atol=0, rtol=1e-7. A given rtol that is ignored would keep the default's pass.
    ref = np.array([value], np.float32)
    got = (ref.astype(np.float64) * (1 + relative)).astype(np.float32)
    assert compare_runs([{"y": ref}], [{"y": got}]).passed
    assert not compare_runs([{"y": ref}], [{"y": got}], atol=0.0, rtol=1e-7).passed


@given(st.sampled_from([np.inf, -np.inf]), st.floats(-1e6, 1e6, width=32) | st.sampled_from([np.inf, -np.inf]))
def test_an_infinity_passes_only_against_the_same_infinity(infinity, other):
    # An overflow that the rewrite turned into a finite value (or the other infinity) changed the
    # function; only an equal infinity is no error.
    ref = np.array([infinity, 1.0], np.float32)
    got = np.array([other, 1.0], np.float32)
    assert compare_runs([{"y": ref}], [{"y": got}]).passed == (other == infinity)


@given(st.integers(0, 1))
def test_a_linear_recipe_whose_restored_output_holds_a_nan_where_the_old_one_does_not_fails(position):
    # The NaN spreads to every upsampled element that reads it; NaN differences must not be
    # skipped (a NaN-ignoring max read them as error 0). NaN where the old output has it too passes.
    new = np.array([0.0, 2.0], np.float32)
    new[position] = np.nan
    assert not restore("y", [LINEAR_X2], [np.array([0.0, 1.0, 2.0, 2.0], np.float32)], [new]).passed
    old = np.array([0.0, 1.0, 2.0, 2.0], np.float32)
    old[[0, 1] if position == 0 else [0, 1, 2, 3]] = np.nan  # the reference Resize weights both neighbours: NaN * 0 is NaN
    assert restore("y", [LINEAR_X2], [old], [new]).passed
