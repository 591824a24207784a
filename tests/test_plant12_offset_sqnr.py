"""plant12: an int8 model whose output carries a large constant offset passed with its varying part
wrong. The original computes 100 + x @ W (a regression head with a bias far from zero: a distance, a
temperature, an age); the planted Q/DQ model computes 100 + 0.5 * x @ W. The SQNR floor counted the
offset as signal: 37 dB against the int8 floor of 20, cosine 0.9999, so `derived::parity` and every
target passed (zoo unet with +100 on its logits: 32 passed, 0 failed). The floor now also holds for
the SQNR of the varying part, the reference's mean removed (sqnr.centered_sqnr_db)."""

import math

import numpy as np
import onnx
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import helper, numpy_helper

from onnx2trt_check.compare import centered_sqnr_db, compare_output, sqnr_db
from onnx2trt_check.config import PRECISION_PROFILES

INT8 = PRECISION_PROFILES["int8"]


def _varying(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(4, 1, 6, 5)).astype(np.float32)


def test_a_halved_varying_part_under_a_large_offset_fails_the_int8_floor():
    v = _varying()
    stats = compare_output("y", list(100 + v), list(100 + 0.5 * v), INT8)
    assert stats.sqnr_db > 30 and stats.cosine > 0.999  # what passed before: the offset is the signal
    assert not stats.passed
    assert any("SQNR of the varying part" in p for p in stats.problems)


def test_an_offset_with_small_honest_noise_still_passes():
    v = _varying()
    noise = np.random.default_rng(1).normal(scale=0.02, size=v.shape)  # 34 dB below the varying part
    assert compare_output("y", list(100 + v), list(100 + v + noise), INT8).passed


def test_a_constant_reference_is_judged_by_the_plain_sqnr():
    ref = [np.full((1, 8), 0.5, np.float32)] * 2
    got = [r + np.float32(1e-3) for r in ref]
    stats = compare_output("y", ref, got, INT8)
    assert math.isnan(stats.centered_sqnr_db) and stats.passed


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@given(arrays(np.float64, st.integers(2, 30), elements=finite), arrays(np.float64, 30, elements=finite), st.floats(-1e4, 1e4))
def test_the_varying_part_sqnr_ignores_a_shared_offset_and_never_exceeds_the_plain_one(ref, noise, offset):
    got = ref + noise[: ref.size] * 1e-2
    centered = centered_sqnr_db(ref, got)
    shifted = centered_sqnr_db(ref + offset, got + offset)
    # The shift rounds each value by ~1e-16 of the offset: noise within a few thousand of those is
    # float64's, not the figure's (CI found noise 1.2e-9 beside an offset of 2048: 0.0015 dB apart).
    audible = np.linalg.norm(got - ref) > 1e-10 * (1 + abs(offset)) * math.sqrt(ref.size)
    if math.isfinite(centered) and np.ptp(ref) > 1e-3 * (1 + abs(offset)) and audible:
        assert math.isclose(centered, shifted, rel_tol=1e-6, abs_tol=1e-3)
        assert centered <= sqnr_db(ref, got) + 1e-9


def _unet_like(qdq: bool) -> onnx.ModelProto:
    """y = 100 + (x @ W) * factor, with Q/DQ on y when `qdq` (an int8 export of the head)."""
    w = np.random.default_rng(2).normal(size=(8, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(100, np.float32), "c"),
             numpy_helper.from_array(np.array(0.5 if qdq else 1.0, np.float32), "f")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Mul", ["m", "f"], ["mf"])]
    if qdq:
        inits += [numpy_helper.from_array(np.array(1.0, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("Add", ["mf", "c"], ["o"]), helper.make_node("QuantizeLinear", ["o", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    else:
        nodes.append(helper.make_node("Add", ["mf", "c"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_derived_parity_fails_an_int8_model_whose_offset_hid_a_wrong_varying_part(pytester):
    onnx.save(_unet_like(qdq=False), str(pytester.path / "original.onnx"))
    onnx.save(_unet_like(qdq=True), str(pytester.path / "derived.onnx"))
    x = np.random.default_rng(3).normal(scale=3, size=(8, 1, 4, 8)).astype(np.float32)
    np.savez(pytester.path / "x.npz", x=x)
    result = pytester.runpytest_inprocess("--model", "derived.onnx", "--reference-model", "original.onnx", "--inputs", "x.npz",
                                          "-k", "derived and parity", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*SQNR of the varying part * dB below the floor 20.0 dB (plain SQNR * dB counts the output's mean as signal)*"])
