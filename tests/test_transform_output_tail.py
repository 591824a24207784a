"""output_tail: trailing movement ops become a post-processing recipe that restores the old output.

The recipes are checked against ONNX Runtime running the original graph (not against our own
numpy), and against plain numpy expressions written here for the common cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper
from transform_strategies import GraphParts, float_arrays, op_counts, run, tensor_info

from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.output_tail import output_tail, verify_output_tails
from onnx2trt_check.transforms.pipeline import run_pipeline
from onnx2trt_check.transforms.tail_recipe import apply_recipe, round_nearest, source_coordinates

MODELS = Path(__file__).resolve().parent.parent / "models"
COORDINATES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _ints(parts: GraphParts, name: str, values) -> str:
    parts.initializers.append(onnx.numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


def _floats(parts: GraphParts, name: str, values) -> str:
    parts.initializers.append(onnx.numpy_helper.from_array(np.asarray(values, np.float32), name))
    return name


@st.composite
def resize_attributes(draw):
    mode = draw(st.sampled_from(["nearest", "linear"]))
    return {"mode": mode, "coordinate_transformation_mode": draw(st.sampled_from(COORDINATES)),
            **({"nearest_mode": draw(st.sampled_from(NEAREST))} if mode == "nearest" else {})}


@st.composite
def tail_models(draw):
    """Conv -> a random chain of tail ops -> output, with the chain's ops listed."""
    channels, height, width = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    parts = GraphParts()
    parts.node("Conv", ["x", parts.const("w", draw(float_arrays((channels, 2, 1, 1))))], ["v0"])
    value, shape, ops = "v0", [1, channels, height, width], []
    for index in range(draw(st.integers(1, 3))):
        out = f"v{index + 1}"
        op = draw(st.sampled_from(["Transpose", "Resize", "Reshape", "Flatten", "Unsqueeze"] if len(shape) == 4
                                  else ["Transpose", "Reshape", "Unsqueeze"]) | (st.just("Squeeze") if 1 in shape else st.nothing()))
        if op == "Transpose":
            perm = draw(st.permutations(range(len(shape))))
            parts.node("Transpose", [value], [out], perm=perm)
            shape = [shape[p] for p in perm]
        elif op == "Resize":
            scales = [1, 1, draw(st.integers(1, 3)), draw(st.integers(1, 3))]
            parts.node("Resize", [value, "", _floats(parts, f"scales{index}", scales)], [out], **draw(resize_attributes()))
            shape = [d * s for d, s in zip(shape, scales)]
        elif op == "Reshape":
            target = [0, -1] if draw(st.booleans()) else [int(np.prod(shape))]
            parts.node("Reshape", [value, _ints(parts, f"shape{index}", target)], [out])
            shape = [shape[0], int(np.prod(shape[1:]))] if target == [0, -1] else target
        elif op == "Flatten":
            axis = draw(st.integers(0, len(shape)))
            parts.node("Flatten", [value], [out], axis=axis)
            shape = [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
        elif op == "Squeeze":
            axis = shape.index(1)
            parts.node("Squeeze", [value, _ints(parts, f"axes{index}", [axis])], [out])
            shape = shape[:axis] + shape[axis + 1:]
        else:
            parts.node("Unsqueeze", [value, _ints(parts, f"axes{index}", [0])], [out])
            shape = [1, *shape]
        value = out
        ops.append(op)
    parts.nodes[-1].output[0] = "y"
    parts.nodes[-1].name = "y"
    return parts.model([tensor_info("x", (1, 2, height, width))], [tensor_info("y", None)]), (1, 2, height, width), ops


@given(tail_models())
def test_recipe_restores_what_onnx_runtime_computed(case):
    model, shape, ops = case
    before = model.SerializeToString()
    result = output_tail(model)
    assert model.SerializeToString() == before
    assert result.modified, result.report
    assert op_counts(result.model) == {"Conv": 1}
    onnx.checker.check_model(result.model, full_check=True)
    recipe = result.report.figures["recipes"]["y"]
    assert [step["op"] for step in recipe["steps"]] == [op.lower() for op in ops]
    feeds = [{"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)} for seed in range(2)]
    verification = verify_output_tails(model, result.model, feeds, result, {})
    assert verification.passed, verification.summary
    for feed in feeds:
        restored = apply_recipe(recipe["steps"], run(result.model, feed)["y"])
        expected = run(model, feed)["y"]
        if recipe["exact"]:
            np.testing.assert_array_equal(restored, expected)
        else:
            np.testing.assert_allclose(restored, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


def test_nearest_resize_with_default_modes_is_a_plain_repeat():
    """Written independently of tail_recipe: half_pixel + round_prefer_floor upsampling by an integer
    factor repeats every element."""
    for size in (1, 2, 5):
        for scale in (2, 3, 4):
            index = np.clip(round_nearest(source_coordinates(size, scale, "half_pixel"), "round_prefer_floor"), 0, size - 1)
            np.testing.assert_array_equal(index, np.repeat(np.arange(size), scale))


def test_a_wrong_recipe_fails_verification():
    parts = GraphParts()
    parts.node("Conv", ["x", parts.const("w", np.ones((2, 2, 1, 1)))], ["c"])
    parts.node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])
    model = parts.model([tensor_info("x", (1, 2, 3, 4))], [tensor_info("y", None)])
    result = output_tail(model)
    result.report.figures["recipes"]["y"]["steps"][0]["perm"] = [0, 3, 2, 1]  # a plausible bug: wrong permutation
    feeds = [{"x": np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32)}]
    verification = verify_output_tails(model, result.model, feeds, result, {})
    assert not verification.passed and "does NOT restore" in verification.summary


def _tail_detector(mode: str = "nearest") -> onnx.ModelProto:
    """The sample heatmap detector with an NHWC Transpose and an x2 upsampling Resize added at its output."""
    model = onnx.load(str(MODELS / "heatmap_sigmoid.onnx"))
    graph = model.graph
    graph.node[-1].output[0] = "heatmap_nchw"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "upsample_scales"))
    graph.node.extend([
        helper.make_node("Resize", ["heatmap_nchw", "", "upsample_scales"], ["heatmap_up"], name="upsample", mode=mode),
        helper.make_node("Transpose", ["heatmap_up"], ["heatmap"], name="to_nhwc", perm=[0, 2, 3, 1]),
    ])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("heatmap", onnx.TensorProto.FLOAT, [1, 32, 32, 1]))
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_sample_detector_comes_back_without_its_tail_and_the_recipe_restores_it(mode):
    """The whole default pipeline: the folds before output_tail change the heatmap by rounding
    (within their own verification), so the recipe is held exactly against the model output_tail
    received, and within rounding against the original."""
    model = _tail_detector(mode)
    with np.load(MODELS / "heatmap_sigmoid.npz") as data:
        feeds = [{"input": x} for x in data["input"][:24]]
    result = run_pipeline(model, feeds)
    assert result.passed, result.summary()
    ops = op_counts(result.model)
    assert "Transpose" not in ops and "Resize" not in ops and "Sigmoid" in ops  # the Sigmoid before the tail stays
    step = next(s for s in result.steps if s.name == "output_tail")
    recipe = step.report.figures["recipes"]["heatmap"]
    assert recipe["old_shape"] == [1, 32, 32, 1] and recipe["new_shape"] == [1, 1, 16, 16]
    assert recipe["exact"] == (mode == "nearest")
    before_tail = run_pipeline(model, feeds, passes=[s.name for s in result.steps if s.name != "output_tail"]).model
    for new, received, original in zip(run_model(result.model, feeds), run_model(before_tail, feeds), run_model(model, feeds)):
        new = new["heatmap"]
        assert new.shape == (1, 1, 16, 16)
        restored = apply_recipe(recipe["steps"], new)
        if mode == "nearest":  # the recipe, and independently numpy's own repeat + transpose, give it exactly
            np.testing.assert_array_equal(restored, received["heatmap"])
            np.testing.assert_array_equal(np.repeat(np.repeat(new, 2, axis=2), 2, axis=3).transpose(0, 2, 3, 1), received["heatmap"])
        else:
            np.testing.assert_allclose(restored, received["heatmap"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(restored, original["heatmap"], rtol=0, atol=1e-5)


def test_the_tail_alone_restores_the_original_detector_exactly():
    model = _tail_detector("nearest")
    with np.load(MODELS / "heatmap_sigmoid.npz") as data:
        feeds = [{"input": x} for x in data["input"][:8]]
    result = run_pipeline(model, feeds, passes=["output_tail"])
    recipe = result.steps[0].report.figures["recipes"]["heatmap"]
    for new, old in zip(run_model(result.model, feeds), run_model(model, feeds)):
        np.testing.assert_array_equal(apply_recipe(recipe["steps"], new["heatmap"]), old["heatmap"])


def test_what_stays_is_reported_with_the_reason():
    parts = GraphParts()
    parts.node("Conv", ["x", parts.const("w", np.ones((2, 2, 1, 1)))], ["c"])
    parts.node("Resize", ["c", "", _floats(parts, "s", [1, 1, 0.5, 0.5])], ["down"], mode="nearest")
    parts.node("Mul", ["c", _floats(parts, "grid", np.arange(8).reshape(1, 2, 2, 2))], ["decoded"])
    parts.node("Resize", ["c", "", _floats(parts, "s3", [1, 1, 2, 2])], ["cubic"], mode="cubic")
    outputs = [tensor_info(n, None) for n in ("down", "decoded", "cubic")]
    result = output_tail(parts.model([tensor_info("x", (1, 2, 2, 2))], outputs))
    assert not result.modified
    reasons = " | ".join(skip.reason for skip in result.report.skips)
    assert "not integer upsampling factors" in reasons
    assert "box decode" in reasons and "out of scope" in reasons
    assert "is cubic" in reasons


def test_a_tail_over_a_value_read_elsewhere_becomes_an_identity():
    parts = GraphParts()
    parts.node("Conv", ["x", parts.const("w", np.ones((2, 2, 1, 1)))], ["c"])
    parts.node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1])
    model = parts.model([tensor_info("x", (1, 2, 3, 3))], [tensor_info("c", None), tensor_info("t", None)])
    result = output_tail(model)
    assert op_counts(result.model) == {"Conv": 1, "Identity": 1}
    assert [o.name for o in result.model.graph.output] == ["c", "t"]
    feeds = [{"x": np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)}]
    assert verify_output_tails(model, result.model, feeds, result, {}).passed


def test_the_transform_family_verifies_the_recipe_of_the_detector(pytester):
    onnx.save(_tail_detector("linear"), str(pytester.path / "det.onnx"))
    result = pytester.runpytest_inprocess("--model", "det.onnx", "--target", "ort", "--transform", "output_tail",
                                          "-k", "transform", "--report-json", "r.json")
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    item = document["models"]["det.onnx"]["families"]["transform[output_tail]"]["checks"]["equivalence"]["figures"]
    (restored,) = item["verification_figures"]["restored"]
    assert restored["name"] == "heatmap" and not restored["exact"] and restored["passed"] and restored["max_abs"] <= restored["atol"] > 0
    assert item["report"]["figures"]["recipes"]["heatmap"]["steps"][0]["mode"] == "linear"


def test_a_linear_layers_bias_is_not_taken_for_a_box_decode():
    parts = GraphParts()
    parts.node("MatMul", ["x", parts.const("w", np.ones((3, 4)))], ["m"])
    parts.node("Add", ["m", parts.const("b", np.arange(4))], ["y"])
    result = output_tail(parts.model([tensor_info("x", (2, 3))], [tensor_info("y", None)]))
    (skip,) = result.report.skips
    assert "comes from Add" in skip.reason and "box decode" not in skip.reason


def test_an_output_that_other_nodes_read_keeps_its_tail():
    """An RNN's per-step output that its head also reads (zoo lstm/gru): moving the output's
    Transpose out would change what the head reads. It stays, with the reason (this crashed)."""
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 3, 4] x) => (float[3, 2, 4] steps, float[2, 4] head) {
            r = Relu(x)
            steps = Transpose<perm = [1, 0, 2]>(r)
            axes = Constant<value = int64[1] {0}>()
            head = ReduceSum<keepdims = 0>(steps, axes)
        }
    """)
    result = output_tail(model)
    assert not result.modified
    assert any("also read by other nodes" in s.reason for s in result.report.skips)
    feeds = [{"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10}]
    assert run_pipeline(model, feeds, passes=["output_tail"]).passed


def test_an_identity_in_place_of_a_tail_declares_the_compute_nodes_shape():
    """hunt19: where the tail's input cannot be renamed (here two outputs resize one Conv output), the
    Identity that carries the output's name took the old output's shape: the written model declared
    'u' [1, 2, 6, 6] while it returned [1, 2, 3, 3] (ORT merges leniently; strict shape inference
    refuses the model), and the recipe and the printout said 'is now [1, 2, 6, 6] (was [1, 2, 6, 6])'."""
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 2, 3, 3] x) => (float[1, 2, 6, 6] u, float[1, 3, 3, 2] t) {
            w = Constant <value = float[2, 2, 1, 1] {1, 0, 0, 1}> ()
            c = Conv (x, w)
            s = Constant <value = float[4] {1, 1, 2, 2}> ()
            u = Resize <mode = "nearest"> (c, , s)
            t = Transpose <perm = [0, 2, 3, 1]> (c)
        }""")
    result = output_tail(model)
    recipes = result.report.figures["recipes"]
    assert {name: recipe["new_shape"] for name, recipe in recipes.items()} == {"u": [1, 2, 3, 3], "t": [1, 2, 3, 3]}
    declared = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in result.model.graph.output}
    assert declared == {"u": [1, 2, 3, 3], "t": [1, 2, 3, 3]}
    onnx.shape_inference.infer_shapes(result.model, strict_mode=True, check_type=True)


def _upsampled_map(mode: str, size: int, factor: int) -> onnx.ModelProto:
    return onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 2, {size}, {size}] x) => (float[1, 2, {size * factor}, {size * factor}] y) {{
            r = Relu (x)
            s = Constant <value = float[4] {{1, 1, {factor}, {factor}}}> ()
            y = Resize <mode = "linear", coordinate_transformation_mode = "{mode}"> (r, , s)
        }}""")


@pytest.mark.parametrize("mode", ["align_corners", "half_pixel"])
def test_a_linear_upsampling_of_a_large_map_is_restored_within_its_coordinates_rounding(mode):
    """hunt19: ORT computes the source coordinate in float32, off by up to an ulp of the axis length,
    so its interpolation weights are too: an honest 128 x 128 map upsampled x4 (a segmenter's bilinear
    align_corners head) came back 60-70 ulps of its largest value off, over the 8 allowed, and
    `optimize --output-tail` refused it ('does NOT restore'). A recipe with the wrong coordinate
    mode still fails."""
    model = _upsampled_map(mode, 128, 4)
    feeds = [{"x": np.random.default_rng(seed).standard_normal((1, 2, 128, 128)).astype(np.float32)} for seed in range(2)]
    result = output_tail(model)
    assert result.modified
    verification = verify_output_tails(model, result.model, feeds, result, {})
    assert verification.passed, verification.summary
    wrong = "half_pixel" if mode == "align_corners" else "asymmetric"
    result.report.figures["recipes"]["y"]["steps"][0]["coordinate_transformation_mode"] = wrong
    assert not verify_output_tails(model, result.model, feeds, result, {}).passed
