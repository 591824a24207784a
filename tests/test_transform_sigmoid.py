"""remove_output_sigmoid, logit_threshold and decisions_agree."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.remove_output_sigmoid import (
    decision_band,
    decisions_agree,
    logit_threshold,
    remove_output_sigmoid,
)

thresholds = st.floats(1e-6, 1 - 1e-6, allow_nan=False, exclude_min=True, exclude_max=True)


def sigmoid64(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def ort_sigmoid(z: np.ndarray) -> np.ndarray:
    """The float32 Sigmoid as deployed models compute it (ONNX Runtime's kernel)."""
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N] z) => (float[N] p) { p = Sigmoid(z) }""")
    return run_model(model, [{"z": np.asarray(z, np.float32).reshape(-1)}])[0]["p"].reshape(np.shape(z))


# --- logit_threshold ------------------------------------------------------------------------------


@given(t=thresholds)
def test_logit_inverts_sigmoid(t):
    z = logit_threshold(t)
    assert sigmoid64(z) == pytest.approx(t, rel=1e-12)
    assert logit_threshold(1 - t) == pytest.approx(-z, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("t", [0.0, 1.0, -0.25, 1.5, float("nan"), float("inf")])
def test_threshold_outside_the_open_interval_is_a_config_error(t):
    with pytest.raises(ConfigError, match=repr(t).replace("(", r"\(")):
        logit_threshold(t)


# --- decisions_agree ------------------------------------------------------------------------------


def _around(center: float, ulps: int) -> np.ndarray:
    """float32 values from `ulps` ulps below the float32 nearest `center` to `ulps` above."""
    values = [np.float32(center)]
    for _ in range(ulps):
        values.insert(0, np.nextafter(values[0], np.float32(-np.inf)))
        values.append(np.nextafter(values[-1], np.float32(np.inf)))
    return np.array(values, np.float32)


@given(t=thresholds, seed=st.integers(0, 2**16), spread=st.sampled_from([1e-3, 1.0, 30.0]))
def test_float32_sigmoid_decides_like_the_logit_threshold(t, seed, spread):
    """The real property the transform relies on: ORT's float32 Sigmoid against logit(t), with
    values exactly at and 1 ulp around logit(t) and random values around it."""
    center = logit_threshold(t)
    random = center + np.random.default_rng(seed).normal(scale=spread, size=200)
    # A dense probe where the kernel's rounding matters: +-1e-6 in probability (~17 ulps of 0.5).
    width = 1e-6 / (t * (1 - t))
    dense = np.linspace(center - width, center + width, 2001)
    z = np.concatenate([_around(center, 1), random.astype(np.float32), dense.astype(np.float32)])

    agreement = decisions_agree(ort_sigmoid(z), z, t)

    assert agreement.agree, agreement.summary()
    assert agreement.total == z.size
    assert agreement.in_band >= 3  # the three values at and 1 ulp around logit(t)
    # Every flip that the band excuses is really a hair from the threshold.
    flips = (ort_sigmoid(z).astype(np.float64) > t) != (z.astype(np.float64) > center)
    assert np.all(np.abs(z[flips] - center) <= decision_band(z[flips], t, dtype=np.float32))


@given(t=st.floats(0.01, 0.99), offset=st.floats(0.05, 2.0))
def test_wrong_logits_are_caught(t, offset):
    """Probabilities of other logits (z + offset) disagree on every z between logit(t) - offset
    and logit(t); for t in [0.01, 0.99] the rounding band is below 1e-4, so the 1e-3 margins
    keep those z outside it."""
    center = logit_threshold(t)
    z = np.linspace(center - 3, center + 3, 601).astype(np.float32)
    probabilities = sigmoid64(z.astype(np.float64) + offset).astype(np.float32)
    inside = (z > center - offset + 1e-3) & (z < center - 1e-3)

    agreement = decisions_agree(probabilities, z, t)

    assert not agreement.agree
    assert agreement.disagreements >= int(inside.sum()) > 0


def test_ties_decide_false_on_both_sides():
    """sigmoid(0) == 0.5 exactly and logit(0.5) == 0: strict '>' gives False on both sides."""
    agreement = decisions_agree(np.array([0.5], np.float32), np.array([0.0], np.float32), 0.5)
    assert agreement.agree and agreement.flipped_in_band == 0 and agreement.in_band == 1


def test_saturated_float32_sigmoid_is_inside_the_band():
    """t = 1 - 1e-9 cannot be resolved in float32 (sigmoid rounds to 1.0 from z ~ 17): the flip at
    z = 18 is counted in the band, not as a disagreement."""
    t = 1 - 1e-9
    z = np.array([18.0], np.float32)
    agreement = decisions_agree(ort_sigmoid(z), z, t)
    assert agreement.agree and agreement.flipped_in_band == 1


# --- the transform --------------------------------------------------------------------------------


def head_model(weights: np.ndarray, *, sigmoid_outputs: int, plain_outputs: int) -> onnx.ModelProto:
    """x[N, K] -> MatMul per head -> Sigmoid (or not) -> outputs p0.., q0.."""
    nodes, inits, outputs = [], [], []
    for i in range(sigmoid_outputs + plain_outputs):
        inits.append(numpy_helper.from_array(weights[i], f"w{i}"))
        name = f"p{i}" if i < sigmoid_outputs else f"q{i}"
        logits = f"z{i}" if i < sigmoid_outputs else name
        nodes.append(helper.make_node("MatMul", ["x", f"w{i}"], [logits], name=f"mm{i}"))
        if i < sigmoid_outputs:
            nodes.append(helper.make_node("Sigmoid", [logits], [name], name=f"sig{i}"))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", weights.shape[2]]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", weights.shape[1]])
    graph = helper.make_graph(nodes, "g", [x], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@given(sigmoid_outputs=st.integers(1, 3), plain_outputs=st.integers(0, 2), k=st.integers(1, 5), m=st.integers(1, 4),
       batch=st.integers(1, 3), seed=st.integers(0, 2**16), select_first=st.booleans(),
       ts=st.lists(thresholds, max_size=3))
def test_strips_sigmoids_keeps_names_and_decisions(sigmoid_outputs, plain_outputs, k, m, batch, seed, select_first, ts):
    rng = np.random.default_rng(seed)
    weights = rng.normal(scale=3.0, size=(sigmoid_outputs + plain_outputs, k, m)).astype(np.float32)
    model = head_model(weights, sigmoid_outputs=sigmoid_outputs, plain_outputs=plain_outputs)
    original = model.SerializeToString()
    stripped = ["p0"] if select_first else [f"p{i}" for i in range(sigmoid_outputs)]
    ts = ts or [0.5]

    result = remove_output_sigmoid(model, scores={name: ts for name in stripped})

    assert model.SerializeToString() == original
    onnx.checker.check_model(result.model)
    assert result.report.figures["stripped_outputs"] == stripped
    assert [o.name for o in result.model.graph.output] == [o.name for o in model.graph.output]
    sigmoid_reads = {n.output[0] for n in result.model.graph.node if n.op_type == "Sigmoid"}
    assert sigmoid_reads == {f"p{i}" for i in range(sigmoid_outputs)} - set(stripped)
    for name in stripped:
        for t in ts:
            assert sigmoid64(result.report.figures["logit_thresholds"][name][repr(t)]) == pytest.approx(t, rel=1e-12)
    kept = {skip.nodes[0] for skip in result.report.skips}  # undeclared Sigmoid outputs, with the reason
    assert kept == {f"p{i}" for i in range(sigmoid_outputs)} - set(stripped)
    feeds = [{"x": rng.normal(size=(batch, k)).astype(np.float32)}]
    before, after = run_model(model, feeds)[0], run_model(result.model, feeds)[0]
    for name in before:
        if name in stripped:
            # atol: ORT's float32 Sigmoid (MLAS's approximation) is off by up to 1.7e-7 (measured on [-20, 20])
            # (found by hypothesis: 9.16e-07 for an exact 1.04e-06); the transform itself is exact.
            np.testing.assert_allclose(sigmoid64(after[name]), before[name], rtol=1e-5, atol=5e-7)
            for t in ts:
                assert decisions_agree(before[name], after[name], t).agree
        else:
            np.testing.assert_array_equal(after[name], before[name])


@pytest.mark.parametrize("text, fragment", [
    ("p = Relu(x)", "comes from Relu"),
    ("z = Neg(x)\n p = Sigmoid(z)\n r = Relu(p)", "also read inside the graph"),
], ids=["not-a-sigmoid", "sigmoid-output-read-inside"])
def test_outputs_that_cannot_be_stripped_are_skipped_with_a_reason(text, fragment):
    model = onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] p) {{ {text} }}""")
    result = remove_output_sigmoid(model, scores={"p": [0.5]})
    assert not result.modified
    assert result.model.SerializeToString() == model.SerializeToString()
    assert fragment in result.report.skips[0].reason


def test_sigmoid_of_a_graph_input_becomes_an_identity_under_the_same_name():
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[3] x) => (float[3] p) { p = Sigmoid(x) }""")
    result = remove_output_sigmoid(model, scores={"": [0.5]})  # "": the only output
    onnx.checker.check_model(result.model)
    assert [n.op_type for n in result.model.graph.node] == ["Identity"]
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    np.testing.assert_array_equal(run_model(result.model, [{"x": x}])[0]["p"], x)


def test_a_declaration_this_model_cannot_take_is_a_skip_and_a_bad_threshold_an_error():
    model = head_model(np.ones((2, 2, 2), np.float32), sigmoid_outputs=2, plain_outputs=0)
    for scores, fragment in (({"scores": [0.5]}, "no such output (outputs: p0, p1)"), ({"": [0.5]}, "this one has 2: name the score output")):
        result = remove_output_sigmoid(model, scores=scores)
        assert not result.modified and any(fragment in skip.reason for skip in result.report.skips)
    with pytest.raises(ConfigError, match="1.5"):
        remove_output_sigmoid(model, scores={"p0": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="without a threshold"):
        remove_output_sigmoid(model, scores={"p0": []})


def box_detector() -> onnx.ModelProto:
    """A DETR-style head: class logits through a Sigmoid (scores) and box coordinates through a
    Sigmoid (normalized cx, cy, w, h), the second not a score at all."""
    return onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8, 4] x) => (float[1, 8, 3] scores, float[1, 8, 4] pred_boxes) {
            w = Constant <value = float[4, 3] {0.5, -1, 2, 1, 0.3, -0.7, -2, 1.5, 0.1, 0.9, -0.4, 0.2}> ()
            z = MatMul(x, w)
            scores = Sigmoid(z)
            pred_boxes = Sigmoid(x)
        }""")


def test_box_coordinates_keep_their_sigmoid_unless_declared():
    result = remove_output_sigmoid(box_detector(), scores={"scores": [0.3]})
    assert result.report.figures["stripped_outputs"] == ["scores"]
    assert [n.output[0] for n in result.model.graph.node if n.op_type == "Sigmoid"] == ["pred_boxes"]
    (skip,) = result.report.skips
    assert list(skip.nodes) == ["pred_boxes"] and "not declared a score" in skip.reason
    x = np.random.default_rng(0).normal(scale=3, size=(1, 8, 4)).astype(np.float32)
    before, after = run_model(box_detector(), [{"x": x}])[0], run_model(result.model, [{"x": x}])[0]
    np.testing.assert_array_equal(after["pred_boxes"], before["pred_boxes"])
    assert not remove_output_sigmoid(box_detector()).modified  # nothing declared: nothing removed
