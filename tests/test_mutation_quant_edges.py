"""Quantization math (quant/) at the edges no other test reached: hand-made mutations survived every
test until these; each test names the mutation it kills. Expected values come from the documented
rule or plain arithmetic, never from the function under test."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.quant.qdq_math import SYMMETRIC_LEVELS, quantize, symmetric_scale

FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# amax whose amax / 127 is a float32 subnormal: positive, below 127 * tiny.
SUBNORMAL_SCALE_AMAX = st.floats(0.0, float(np.float32(SYMMETRIC_LEVELS * FLOAT32_TINY)), width=32, exclude_min=True, exclude_max=True)


@given(SUBNORMAL_SCALE_AMAX)
def test_a_range_whose_scale_would_be_subnormal_gets_scale_one(amax):
    # "A range whose scale would be 0 or subnormal gets scale 1.0 ... Such values quantize to 0."
    # Kills "scale > 0" in place of "scale >= float32 tiny": amax / 127 kept as a subnormal scale,
    # which has too few bits to map amax to 127 (x / scale lands anywhere from 64 to inf).
    assert float(np.float32(amax) / np.float32(SYMMETRIC_LEVELS)) < FLOAT32_TINY  # the case is reached
    assert symmetric_scale(amax) == np.float32(1.0)
    assert symmetric_scale([amax, 127.0]).tolist() == [1.0, 1.0]
    assert quantize(np.float32(amax), symmetric_scale(amax)) == 0
