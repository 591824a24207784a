"""review14: transform verification's atol floor (hypothesis: float32 subnormals) was the dtype's smallest
normal number, 6.1e-5 in float16. An output of a half model whose values all sit below it (here
1e-5..4e-5) then passed a fold 50% off, which the sqrt(eps) rule failed before the floor. float16 keeps
its subnormals (GPUs flush float32's): its floor is one step of them (6e-8), a single rounding."""

from __future__ import annotations

import numpy as np

from onnx2trt_check.transforms.verify import compare_runs

SMALL = np.random.default_rng(0).uniform(1e-5, 4e-5, (4, 64))


def _runs(dtype):
    ref = SMALL.astype(np.float16).astype(dtype)
    return [{"y": ref}], [{"y": (ref.astype(np.float32) * 1.5).astype(np.float16).astype(dtype)}]


def test_a_fold_50_percent_off_on_small_half_values_fails():
    expected, actual = _runs(np.float16)
    assert not compare_runs(expected, actual).passed
    expected, actual = _runs(np.float32)  # a float32 output of a model computing in half inside
    assert not compare_runs(expected, actual, tolerance_dtype=np.float16).passed


def test_one_rounding_of_a_half_subnormal_passes():
    step = np.finfo(np.float16).smallest_subnormal
    ref = np.array([[step, 2 * step, 0.0, 3 * step]], np.float16)
    assert compare_runs([{"y": ref}], [{"y": ref + step}]).passed
