"""fuse_input_normalization: random Sub/Div, Sub/Mul and BN input normalizations in front of
random Convs (groups, kernels, strides, dilations, pads, tiny std, batch sizes), and the external
mean/std mode; negative cases leave the model unchanged with a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.fuse_input_normalization import fuse_input_normalization

NORMALIZING_OPS = {"Sub", "Div", "Mul", "BatchNormalization"}


@dataclasses.dataclass(frozen=True)
class ConvCase:
    batch: int
    groups: int
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    spatial: tuple[int, int]
    weight: np.ndarray
    bias: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray


@st.composite
def conv_cases(draw, *, allow_pads=True) -> ConvCase:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4)) if allow_pads else (0, 0, 0, 0)
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    spatial = tuple(draw(st.integers(e, e + 3)) for e in extent)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    std = np.array(draw(st.lists(st.sampled_from([1e-3, 0.05, 0.25, 1.0, 3.0]), min_size=c_in, max_size=c_in)))
    return ConvCase(
        batch=draw(st.integers(1, 2)), groups=groups, c_in=c_in, c_out=c_out, kernel=kernel,
        strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), dilations=dilations, pads=pads,
        spatial=spatial,
        weight=rng.normal(size=(c_out, c_in // groups, *kernel)).astype(np.float32),
        bias=rng.normal(size=c_out).astype(np.float32) if draw(st.booleans()) else None,
        mean=rng.uniform(-1, 1, size=c_in).astype(np.float32), std=std.astype(np.float32),
    )


def conv_node(case: ConvCase, data: str, out: str, inits: list) -> onnx.NodeProto:
    inits.append(numpy_helper.from_array(case.weight, "W"))
    inputs = [data, "W"]
    if case.bias is not None:
        inits.append(numpy_helper.from_array(case.bias, "B"))
        inputs.append("B")
    return helper.make_node("Conv", inputs, [out], name="conv", group=case.groups, strides=list(case.strides),
                            dilations=list(case.dilations), pads=list(case.pads))


def normalization_nodes(form: str, case: ConvCase, inits: list, *, operand_rank: int) -> list:
    """x -> normalized value `n` in one of the three forms."""
    shape = (1,) * (operand_rank - 3) + (case.c_in, 1, 1)
    const = lambda name, a: inits.append(numpy_helper.from_array(np.asarray(a, np.float32).reshape(shape), name))
    if form == "bn":
        zeros, ones = np.zeros(case.c_in), np.ones(case.c_in)
        for name, value in (("g", 1.0 / case.std), ("b", -case.mean / case.std), ("m", zeros), ("v", ones)):
            inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"], epsilon=0.0, name="bn")]
    const("mean", case.mean)
    const("std", case.std if form == "sub_div" else 1.0 / case.std)
    op = "Div" if form == "sub_div" else "Mul"
    return [helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
            helper.make_node(op, ["s", "std"], ["n"], name="scale")]


def make_model(nodes, inits, x_shape, *, extra_inputs=(), outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape), *extra_inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def raw_pixels(case: ConvCase, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(case.batch, case.c_in, *case.spatial)).astype(np.float32)


def assert_outputs_close(actual: dict, expected: dict, *, terms: float = 0.0) -> None:
    """The original sums W * normalized x, the fold sums (W / std) * x then shifts: the same terms
    in another order, so errors are float32 roundings of the largest terms, ~1e-6 of `terms` (the
    largest sum of |term| an output can hold: term_scale) or of the output scale. With std 1e-3 the
    terms reach 1e4 and cancel to outputs of 0.25 (a fold 1.8e-4 off there was rounding). A wrong
    channel, group or border term is O(1) of the terms."""
    for name, reference in expected.items():
        atol = max(1e-4 * max(1.0, float(np.abs(reference).max())), 1e-6 * terms)
        np.testing.assert_allclose(actual[name], reference, rtol=1e-4, atol=atol, err_msg=name)


def term_scale(case: ConvCase, raw: np.ndarray) -> float:
    """max |normalized x| times the largest sum of |W| of an output channel."""
    normalized = (raw - case.mean.reshape(1, -1, 1, 1)) / case.std.reshape(1, -1, 1, 1)
    return float(np.abs(normalized).max() * np.abs(case.weight).reshape(case.c_out, -1).sum(axis=1).max())


def op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


# --- in-graph normalization -----------------------------------------------------------------------


@given(case=conv_cases(), form=st.sampled_from(["sub_div", "sub_mul", "bn"]), operand_rank=st.sampled_from([3, 4]),
       dynamic_batch=st.booleans(), relu_after=st.booleans())
def test_fold_matches_original_in_ort(case, form, operand_rank, dynamic_batch, relu_after):
    inits: list = []
    nodes = normalization_nodes(form, case, inits, operand_rank=operand_rank)
    nodes.append(conv_node(case, "n", "c" if relu_after else "y", inits))
    if relu_after:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    model = make_model(nodes, inits, ["N" if dynamic_batch else case.batch, case.c_in, *case.spatial])
    original = model.SerializeToString()

    result = fuse_input_normalization(model)

    assert model.SerializeToString() == original
    assert result.modified, result.report
    onnx.checker.check_model(result.model)
    assert not NORMALIZING_OPS & set(op_types(result.model))
    conv = next(n for n in result.model.graph.node if n.op_type == "Conv")
    assert conv.input[0] == "x"
    assert ("Add" in op_types(result.model)) == any(case.pads)  # mean is never all zero here
    assert [o.name for o in result.model.graph.output] == ["y"]
    feeds = [{"x": raw_pixels(case)}]
    assert_outputs_close(run_model(result.model, feeds)[0], run_model(model, feeds)[0], terms=term_scale(case, feeds[0]["x"]))


@given(case=conv_cases(allow_pads=False))
def test_fold_with_dynamic_spatial_shape_and_no_padding(case):
    inits: list = []
    nodes = normalization_nodes("sub_div", case, inits, operand_rank=4) + [conv_node(case, "n", "y", inits)]
    model = make_model(nodes, inits, ["N", case.c_in, "H", "W"])
    result = fuse_input_normalization(model)
    assert result.modified, result.report
    assert op_types(result.model) == ["Conv"]
    feeds = [{"x": raw_pixels(case)}]
    assert_outputs_close(run_model(result.model, feeds)[0], run_model(model, feeds)[0], terms=term_scale(case, feeds[0]["x"]))


def test_two_convs_share_the_normalized_input():
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("mean", rng.uniform(size=(1, 3, 1, 1))), ("std", rng.uniform(0.1, 1, size=(1, 3, 1, 1))),
        ("W1", rng.normal(size=(2, 3, 3, 3))), ("W2", rng.normal(size=(4, 3, 1, 1))))]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"]), helper.make_node("Div", ["s", "std"], ["n"]),
        helper.make_node("Conv", ["n", "W1"], ["y1"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Conv", ["n", "W2"], ["y2"], name="c2"),
    ]
    model = make_model(nodes, inits, [1, 3, 5, 5], outputs=("y1", "y2"))
    result = fuse_input_normalization(model)
    assert sorted(op_types(result.model)) == ["Add", "Conv", "Conv"]
    feeds = [{"x": rng.uniform(size=(1, 3, 5, 5)).astype(np.float32)}]
    assert_outputs_close(run_model(result.model, feeds)[0], run_model(model, feeds)[0])


# --- normalization done outside the model ---------------------------------------------------------


@given(case=conv_cases(), dynamic_batch=st.booleans())
def test_external_mean_std_make_the_model_read_raw_pixels(case, dynamic_batch):
    inits: list = []
    model = make_model([conv_node(case, "x", "y", inits)], inits,
                       ["N" if dynamic_batch else case.batch, case.c_in, *case.spatial])
    original = model.SerializeToString()

    result = fuse_input_normalization(model, mean=case.mean.tolist(), std=case.std.tolist())

    assert model.SerializeToString() == original
    assert result.modified, result.report
    onnx.checker.check_model(result.model)
    raw = raw_pixels(case)
    # The preprocessing the caller used to do, in float64 from its definition.
    per_channel = lambda v: v.astype(np.float64).reshape(1, -1, 1, 1)
    normalized = ((raw - per_channel(case.mean)) / per_channel(case.std)).astype(np.float32)
    expected = run_model(model, [{"x": normalized}])[0]
    assert_outputs_close(run_model(result.model, [{"x": raw}])[0], expected)


def test_external_normalization_skips_an_input_that_also_feeds_a_relu():
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 2, 4, 4] x) => (float[1, 1, 4, 4] y, float[1, 2, 4, 4] r)
        <float[1, 2, 1, 1] w = {1.0, 2.0}> {
            y = Conv(x, w)
            r = Relu(x)
        }""")
    result = fuse_input_normalization(model, mean=[0.5, 0.5], std=[0.2, 0.3])
    assert not result.modified
    assert "Relu" in result.report.skips[0].reason


@pytest.mark.parametrize("kwargs, fragment", [
    ({"std": [0.5, 0.0]}, "zero"),
    ({"mean": [0.1, 0.2], "std": [1.0, 2.0, 3.0]}, "one per channel"),
    ({"mean": [float("nan")]}, "finite"),
])
def test_bad_external_statistics_are_a_config_error(kwargs, fragment):
    model = make_model([], [], [1, 3, 4, 4], outputs=("x",))
    with pytest.raises(ConfigError, match=fragment):
        fuse_input_normalization(model, **kwargs)


# --- candidates that must stay --------------------------------------------------------------------

_NORMALIZE_THEN = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[{shape}] x{extra_input}) => (float[1, 2, 4, 4] y{extra_output})
    <float[1, 2, 3, 3] w = {{{weights}}}, float[1, 2, 1, 1] std = {{0.5, 0.25}}{mean_init}> {{
        s = Sub(x, mean)
        n = Div(s, std)
        y = Conv <pads = [1, 1, 1, 1]> (n, w)
        {extra_node}
    }}"""


_CONSTANT_MEAN = ", float[1, 2, 1, 1] mean = {0.5, 0.4}"


def _negative_model(*, shape="1, 2, 4, 4", extra_input="", extra_output="", mean_init=_CONSTANT_MEAN, extra_node=""):
    weights = ", ".join(str(float(v)) for v in range(18))
    return onnx.parser.parse_model(_NORMALIZE_THEN.format(
        shape=shape, extra_input=extra_input, extra_output=extra_output, weights=weights,
        mean_init=mean_init, extra_node=extra_node))


@pytest.mark.parametrize("model, fragment", [
    (_negative_model(extra_output=", float[1, 2, 4, 4] r", extra_node="r = Relu(n)"), "also feeds Relu"),
    (_negative_model(extra_input=", float[1, 2, 1, 1] mean", mean_init=""), "is not a constant"),
    (_negative_model(shape="1, 2, H, W"), "dynamic spatial shape"),
], ids=["also-feeds-relu", "non-constant-mean", "dynamic-spatial-with-padding"])
def test_candidates_that_cannot_fold_are_left_unchanged_with_a_reason(model, fragment):
    original = model.SerializeToString()
    result = fuse_input_normalization(model)
    assert not result.modified
    assert result.model.SerializeToString() == original
    assert model.SerializeToString() == original
    assert any(fragment in skip.reason for skip in result.report.skips), result.report.skips


# --- other affine chains --------------------------------------------------------------------------

_CHAIN = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 2, 5, 4] x) => (float[2, 3, 3, 4] y)
    <float[3, 2, 3, 1] w = {{{weights}}}, float[3] b = {{0.5, -1.0, 2.0}},
     float[2, 1, 1] m = {{120.0, 100.0}}, float[1, 2, 1, 1] d = {{60.0, 50.0}}, float k = {{255.0}}> {{
        {body}
        y = Conv <strides = [2, 1], pads = [1, 0, 1, 0]> (n, w, b)
    }}"""


@pytest.mark.parametrize("body", [
    "s = Div(x, k)\n a = Mul(s, k)\n t = Sub(a, m)\n n = Div(t, d)",  # scalar operands and three steps
    "t = Sub(m, x)\n n = Div(t, d)",  # reversed Sub: n = (m - x) / d
    "t = Add(x, m)\n n = Mul(d, t)",  # constant first in a commutative op
], ids=["scalar-three-steps", "reversed-sub", "constant-first"])
def test_other_affine_chains_fold_exactly(body):
    weights = ", ".join(f"{v:.3f}" for v in np.random.default_rng(5).normal(size=18))
    model = onnx.parser.parse_model(_CHAIN.format(weights=weights, body=body))
    result = fuse_input_normalization(model)
    assert result.modified, result.report
    assert op_types(result.model) == ["Conv", "Add"]
    x = np.random.default_rng(6).uniform(0, 255, size=(2, 2, 5, 4)).astype(np.float32)
    assert_outputs_close(run_model(result.model, [{"x": x}])[0], run_model(model, [{"x": x}])[0])


def test_division_of_a_constant_by_the_input_is_not_affine():
    model = onnx.parser.parse_model(_CHAIN.format(weights=", ".join(["1.0"] * 18), body="n = Div(k, x)"))
    result = fuse_input_normalization(model)
    assert not result.modified
    assert "not affine" in result.report.skips[0].reason
