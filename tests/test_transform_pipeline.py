"""run_pipeline over the registry, check_equivalence, and a deliberately broken step."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.pipeline import run_pipeline
from onnx2trt_check.transforms.registry import (
    TRANSFORMS,
    RegisteredTransform,
    get_transform,
)
from onnx2trt_check.transforms.remove_output_sigmoid import verify_decisions
from onnx2trt_check.transforms.verify import check_equivalence, default_tolerance, element_scales

ORDER = ("simplify", "optimize", "fuse_repconv", "bn_across_maxpool", "fold_conv_bn", "fold_gemm_bn",
         "fuse_input_normalization", "fold_bn_conv", "fold_bn_gemm", "remove_output_sigmoid", "output_tail")


def detector(seed: int = 0) -> onnx.ModelProto:
    """Sub/Div normalization -> padded Conv -> BN -> Relu -> 1x1 Conv -> Sigmoid: every step of
    the registry but RepConv has something to do."""
    rng = np.random.default_rng(seed)
    arrays = {
        "mean": rng.uniform(0.3, 0.6, (1, 3, 1, 1)), "std": rng.uniform(0.2, 0.3, (1, 3, 1, 1)),
        "w1": rng.normal(size=(4, 3, 3, 3)), "gamma": rng.uniform(0.5, 2, 4), "beta": rng.normal(size=4),
        "bn_mean": rng.normal(size=4), "bn_var": rng.uniform(0.5, 2, 4), "w2": rng.normal(size=(2, 4, 1, 1)),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["n"], name="div"),
        helper.make_node("Conv", ["n", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "bn_mean", "bn_var"], ["b1"], name="bn"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["logits"], name="conv2"),
        helper.make_node("Sigmoid", ["logits"], ["scores"], name="sigmoid"),
    ]
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()]
    graph = helper.make_graph(nodes, "detector",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def feeds(batch: int = 2, seed: int = 1) -> list[dict]:
    return [{"x": np.random.default_rng(seed).uniform(0, 1, (batch, 3, 6, 6)).astype(np.float32)}]


def op_types(model):
    return [node.op_type for node in model.graph.node]


# --- the registry ---------------------------------------------------------------------------------


def test_registry_order_and_lookup():
    assert tuple(entry.name for entry in TRANSFORMS) == ORDER
    assert get_transform("fold_conv_bn").name == "fold_conv_bn"
    with pytest.raises(ConfigError, match="unknown transform 'fold_everything'; valid names: simplify, optimize"):
        get_transform("fold_everything")


# --- the full pipeline ----------------------------------------------------------------------------


def test_default_pipeline_transforms_and_verifies_every_step():
    model = detector()
    original = model.SerializeToString()

    result = run_pipeline(model, feeds(), options={"remove_output_sigmoid": {"scores": {"scores": [0.3, 0.9]}}})

    assert model.SerializeToString() == original
    assert result.passed, result.summary()
    assert [step.name for step in result.steps] == list(ORDER)
    assert sorted(op_types(result.model)) == ["Add", "Conv", "Conv", "Relu"]  # Add: the border correction
    assert [o.name for o in result.model.graph.output] == ["scores"]
    by_name = {step.name: step for step in result.steps}
    assert by_name["fuse_input_normalization"].modified and by_name["fold_conv_bn"].modified
    for step in result.steps:
        assert step.modified == (step.verification is not None)
        if not step.modified:
            assert step.nodes_after == step.nodes_before
    decisions = by_name["remove_output_sigmoid"].verification.figures["decisions"]
    assert sorted({d["threshold"] for d in decisions}) == [0.3, 0.9]  # the declared ones, nothing else
    # The end result, checked here without the pipeline: logits whose sigmoid is the original output.
    expected = run_model(model, feeds(seed=7))[0]["scores"]
    logits = run_model(result.model, feeds(seed=7))[0]["scores"]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits.astype(np.float64))), expected, atol=1e-5)


def test_every_model_of_the_pipeline_runs_once(monkeypatch):
    """A step's result is the next step's `before`: its outputs are reused, not computed again.
    Each modifying step runs its result; only the first step also runs the original."""
    import onnx2trt_check.transforms.pipeline as pipeline_module

    ran = []
    monkeypatch.setattr(pipeline_module, "run_model", lambda model, feeds: ran.append(model) or run_model(model, feeds))
    result = run_pipeline(detector(), feeds(), options={"remove_output_sigmoid": {"scores": {"scores": [0.5]}}})
    modifying = sum(step.modified for step in result.steps)
    assert result.passed and modifying >= 3
    assert len(ran) == modifying + 1
    assert len({id(model) for model in ran}) == len(ran)


def _perturb_first_weight(model: onnx.ModelProto) -> TransformResult:
    """A 'transform' with a small bug: scales the first Conv's weight by 1.01."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    name = next(n for n in broken.graph.node if n.op_type == "Conv").input[1]
    weight = next(i for i in broken.graph.initializer if i.name == name)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.01), name))
    return TransformResult(broken, True, TransformReport())


def test_pipeline_stops_at_and_names_a_broken_transform():
    broken = RegisteredTransform("off_by_one_percent", _perturb_first_weight)
    result = run_pipeline(detector(), feeds(), passes=["fold_conv_bn", broken, "remove_output_sigmoid"])

    assert not result.passed and result.failed_step == "off_by_one_percent"
    assert [step.name for step in result.steps] == ["fold_conv_bn", "off_by_one_percent"]
    assert "NOT equivalent" in result.steps[-1].verification.summary
    assert "stopped at 'off_by_one_percent'" in result.summary()
    # The result is the last model that passed: fold_conv_bn's.
    assert "BatchNormalization" not in op_types(result.model) and "Sigmoid" in op_types(result.model)
    assert check_equivalence(detector(), result.model, feeds()).passed


def _raise(model):
    raise RuntimeError("pattern table corrupted")


def _dangling_input(model):
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    bad.graph.node[0].input[0] = "nowhere"
    return TransformResult(bad, True, TransformReport())


@pytest.mark.parametrize("function, fragment", [
    (_raise, "raised RuntimeError: pattern table corrupted"),
    (_dangling_input, "onnx.checker rejects the result"),
])
def test_crashing_or_invalid_steps_fail_with_the_reason(function, fragment):
    result = run_pipeline(detector(), feeds(), passes=[("bad_step", function), "fold_conv_bn"])
    assert result.failed_step == "bad_step" and len(result.steps) == 1
    assert fragment in result.steps[0].error
    assert result.model.SerializeToString() == detector().SerializeToString()


def _negate_logits(model):
    """Removes the Sigmoid but returns -logits: every decision flips, values are not compared."""
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    sigmoid = next(n for n in bad.graph.node if n.op_type == "Sigmoid")
    sigmoid.op_type = "Neg"
    report = TransformReport(figures={"stripped_outputs": ["scores"], "logit_thresholds": {"scores": {"0.5": 0.0}}})
    return TransformResult(bad, True, report)


def test_decision_verifier_catches_flipped_logits():
    bad = RegisteredTransform("negating_sigmoid_removal", _negate_logits, verifier=verify_decisions)
    result = run_pipeline(detector(), feeds(), passes=[bad])
    assert result.failed_step == "negating_sigmoid_removal"
    assert "DISAGREE" in result.steps[0].verification.summary


def test_bad_pipeline_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="valid names"):
        run_pipeline(detector(), feeds(), passes=["simplify", "fold_it_all"])
    with pytest.raises(ConfigError, match="not in the pipeline"):
        run_pipeline(detector(), feeds(), passes=["simplify"], options={"fold_bn_conv": {"mode": "plain"}})
    with pytest.raises(ConfigError, match="one string"):
        run_pipeline(detector(), feeds(), passes="simplify")
    with pytest.raises(InputDataError, match="no feeds"):
        run_pipeline(detector(), [], passes=["simplify"])


# --- check_equivalence ----------------------------------------------------------------------------


def _scaled_output(factor: np.float32) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.array([factor], np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@settings(max_examples=20)
@given(scale=st.sampled_from([1e-3, 1.0, 1e3]), relative_error=st.floats(1e-9, 1e-1))
def test_equivalence_tolerance_is_sqrt_eps_of_the_output_scale(scale, relative_error):
    """y = x * k against y = x * k * (1 + e) on x with max |x| = scale: passes iff the worst
    difference is within sqrt(eps32) * max|y| (+ rtol * |y|), for any output magnitude."""
    x = np.linspace(-scale, scale, 9, dtype=np.float32)[:8].reshape(2, 4)
    factor = np.float32(1.0 + relative_error)
    result = check_equivalence(_scaled_output(np.float32(1.0)), _scaled_output(factor), {"x": x})
    sqrt_eps = float(np.sqrt(np.finfo(np.float32).eps))
    actual = x * factor
    diff = np.abs(actual.astype(np.float64) - x)
    assert result.passed == bool(np.all(diff <= sqrt_eps * scale + sqrt_eps * np.abs(x)))
    assert result.outputs[0].max_abs == pytest.approx(float(diff.max()))
    assert result.outputs[0].atol == pytest.approx(sqrt_eps * scale, rel=1e-6)
    assert default_tolerance(x)[1] == pytest.approx(sqrt_eps)


@given(st.floats(min_value=0.0, max_value=1e-38, allow_subnormal=True))
def test_subnormal_differences_are_rounding_noise(magnitude):
    """hypothesis: a fold of an output ~1e-45 (float32 subnormals, which GPUs flush to zero) differed
    by 1.4e-45 against an atol of 9.7e-49, and the pipeline stopped; atol is never below float32's
    smallest normal number."""
    x = np.array([magnitude, -magnitude, 0.0], dtype=np.float32)
    atol, _ = default_tolerance(x)
    assert atol >= np.finfo(np.float32).tiny
    assert default_tolerance(np.array([1.0], np.float16))[0] == pytest.approx(float(np.sqrt(np.finfo(np.float16).eps)))


def test_equivalence_reports_missing_outputs_moved_nans_and_integer_mismatch():
    ints = lambda k: onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (int64[3] x) => (int64[3] y) <int64[1] k = {{{k}}}> {{ y = Add(x, k) }}""")
    result = check_equivalence(ints(0), ints(1), [{"x": np.array([1, 2, 3])}])
    assert not result.passed and result.outputs[0].mismatched == 3
    nan_model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) { y = Sqrt(x) }""")
    negative = {"x": np.array([-1.0, 4.0], np.float32)}
    assert check_equivalence(nan_model, nan_model, negative).passed  # NaN at the same place is no difference
    no_nan = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) { a = Abs(x)\n y = Sqrt(a) }""")
    result = check_equivalence(nan_model, no_nan, negative)
    assert not result.passed and result.outputs[0].note == "NaN at different places"
    renamed = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] z) { z = Sqrt(x) }""")
    result = check_equivalence(nan_model, renamed, {"x": np.array([1.0, 4.0], np.float32)})
    assert not result.passed and "missing" in result.outputs[0].note and "NOT equivalent" in result.summary


def test_without_declared_scores_every_output_sigmoid_stays():
    """The default pipeline changes no output's values: the Sigmoid stays, skipped with the reason."""
    result = run_pipeline(detector(), feeds())
    step = next(step for step in result.steps if step.name == "remove_output_sigmoid")
    assert result.passed and not step.modified and "Sigmoid" in op_types(result.model)
    assert "not declared a score" in step.report.skips[0].reason and "--threshold scores:P" in step.report.skips[0].reason


@given(st.integers(1, 3), st.lists(st.integers(1, 6), min_size=0, max_size=3), st.integers(0, 2**32 - 1), st.floats(1e-3, 1e3))
def test_an_elements_scale_is_between_its_own_magnitude_and_the_outputs_largest(feeds, shape, seed, spread):
    rng = np.random.default_rng(seed)
    expected = [(rng.normal(size=shape) * spread ** rng.uniform(-1, 1, size=shape)).astype(np.float32) for _ in range(feeds)]
    scales = element_scales(expected)
    values = np.abs(np.concatenate([e.reshape(-1) for e in expected]).astype(np.float64))
    assert scales.shape == values.shape
    assert np.all(scales >= values) and np.all(scales <= values.max(initial=0.0))


def test_a_small_part_concatenated_beside_a_large_one_keeps_its_own_scale():
    """zoo13: pixel boxes (up to 640) and class scores (0..1) in one detector output: the scores are
    judged on their own scale, not on 640's."""
    rng = np.random.default_rng(0)
    boxes, scores = rng.uniform(0, 640, (1, 4, 100)), rng.uniform(0, 1, (1, 80, 100))
    output = np.concatenate([boxes, scores], axis=1).astype(np.float32)
    scales = element_scales([output]).reshape(output.shape)
    assert scales[:, 4:].max() <= 1.0 and scales[:, :4].min() > 100
    lone = np.array([[3.0, 1e-4, -2.0]], np.float32)  # slices of under 16 elements: the whole output's scale
    assert np.all(element_scales([lone]) == 3.0)


def test_a_skip_says_the_main_graph_where_bodies_are_left_as_they_are():
    """hunt20: 'no Conv -> BatchNormalization pair in the model' where an If branch held one; our
    transforms look at the main graph only, and the skip now says so."""
    from onnx2trt_check.transforms.run import skip_reason

    def branch(name: str, bn: bool) -> onnx.GraphProto:
        nodes = [helper.make_node("Conv", ["x", "w"], [f"{name}_c"]),
                 helper.make_node("BatchNormalization", [f"{name}_c", "g", "b", "m", "v"], [f"{name}_y"]) if bn
                 else helper.make_node("Identity", [f"{name}_c"], [f"{name}_y"])]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, None)])

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(2, 1, 1, 1)).astype(np.float32), "w"),
             *[numpy_helper.from_array(np.ones(2, np.float32) * v, n) for n, v in [("g", 1.5), ("b", 0.1), ("m", 0.2), ("v", 1.0)]]]
    graph = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=branch("t", True), else_branch=branch("e", False))], "g",
                              [helper.make_tensor_value_info("cond", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    result = run_pipeline(model, [{"cond": np.array(True), "x": np.ones((1, 1, 4, 4), np.float32)}], passes=("fold_conv_bn",))
    step = next(s for s in result.steps if s.name == "fold_conv_bn")
    assert not step.modified and skip_reason(step).endswith("in the main graph (its If/Loop/Scan bodies are not transformed)"), skip_reason(step)
    plain = run_pipeline(detector(), feeds(), passes=("fold_gemm_bn",))
    assert skip_reason(plain.steps[0]).endswith("in the model")
