"""windows.run_in_windows: a whole-graph tool applied window by window must give a valid model that
computes the same function, whatever the cuts fall on, and never mix up the windows' names."""

from __future__ import annotations

import numpy as np
import onnx
import onnxoptimizer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.transforms.registry import get_transform
from onnx2trt_check.transforms.simplify import optimize
from onnx2trt_check.transforms.verify import check_equivalence
from onnx2trt_check.transforms.windows import run_in_windows

C, H = 4, 6
SHAPE = [1, C, H, H]
DEFAULT_PASSES = list(get_transform("optimize").defaults["passes"])


class ChainBuilder:
    """A chain of small blocks over one [1, 4, 6, 6] tensor, each a pattern some onnxoptimizer pass
    rewrites (or a trap for windows: dead branches, side outputs, shared weights, If captures)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes, self.initializers, self.side_outputs = [], [], []
        self.current = "x"
        self.shared_weight = None

    def _name(self, hint: str) -> str:
        return f"{hint}{len(self.nodes)}"

    def _node(self, op_type: str, inputs, **attributes) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out

    def _const(self, hint: str, array) -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def _weight(self) -> np.ndarray:
        return self.rng.normal(0, 0.4, (C, C, 3, 3))

    def _shared(self) -> str:
        if self.shared_weight is None:
            self.shared_weight = "w_shared"
            self.initializers.append(numpy_helper.from_array(self._weight().astype(np.float32), "w_shared"))
        return self.shared_weight

    def add(self, block: str) -> None:
        x = self.current
        if block == "pad_conv":
            pads = helper.make_tensor(self._name("pads"), TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
            self.initializers.append(pads)
            self.current = self._node("Conv", [self._node("Pad", [x, pads.name]), self._const("w", self._weight())])
        elif block == "conv_add":
            conv = self._node("Conv", [x, self._const("w", self._weight())], pads=[1, 1, 1, 1])
            self.current = self._node("Add", [conv, self._const("b", self.rng.normal(0, 1, (1, C, 1, 1)))])
        elif block == "shared_conv_bn":
            conv = self._node("Conv", [x, self._shared()], pads=[1, 1, 1, 1])
            stats = [self.rng.uniform(0.5, 2, C), self.rng.normal(0, 1, C), self.rng.normal(0, 1, C), self.rng.uniform(0.5, 2, C)]
            self.current = self._node("BatchNormalization", [conv, *(self._const("bn", s) for s in stats)])
        elif block == "identity":
            self.current = self._node("Identity", [x])
        elif block == "transposes":
            self.current = self._node("Transpose", [self._node("Transpose", [x], perm=[0, 2, 3, 1])], perm=[0, 3, 1, 2])
        elif block == "mul_one":
            self.current = self._node("Mul", [x, self._const("one", np.ones(1))])
        elif block == "tanh":
            self.current = self._node("Tanh", [x])
        elif block == "dead":
            self._node("Relu", [x])  # read by nobody: eliminate_deadend's
        elif block == "side_output":
            self.side_outputs.append(x)
        elif block == "if_capture":
            then = helper.make_graph([helper.make_node("Relu", [x], ["then_out"])], "then", [],
                                     [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, SHAPE)])
            other = helper.make_graph([helper.make_node("Neg", [x], ["else_out"])], "else", [],
                                      [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, SHAPE)])
            cond = self._name("cond")
            self.nodes.append(helper.make_node("Greater", [self._const("gx", [0.0]), self._const("gy", [1.0])], [cond]))
            self.current = self._node("If", [cond], then_branch=then, else_branch=other)

    def model(self) -> onnx.ModelProto:
        outputs = [*dict.fromkeys(self.side_outputs), self._node("Identity", [self.current])]
        graph = helper.make_graph(
            self.nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, SHAPE) for name in outputs if name != "x"],
            self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


BLOCKS = ["pad_conv", "conv_add", "shared_conv_bn", "identity", "transposes", "mul_one", "tanh", "dead", "side_output", "if_capture"]


def chain(blocks, seed: int = 0) -> onnx.ModelProto:
    builder = ChainBuilder(seed)
    for block in blocks:
        builder.add(block)
    return builder.model()


def feed(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(0, 1, SHAPE).astype(np.float32)}


def onnxoptimizer_tool(passes):
    return lambda part: onnxoptimizer.optimize(part, passes)


def op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


@settings(max_examples=40)
@given(blocks=st.lists(st.sampled_from(BLOCKS), min_size=2, max_size=24), window=st.integers(2, 9),
       fuse_bn=st.booleans(), annotated=st.booleans(), overridable=st.booleans(), seed=st.integers(0, 999))
def test_windowed_onnxoptimizer_keeps_the_function_and_a_valid_graph(blocks, window, fuse_bn, annotated, overridable, seed):
    """Any chain, any window size: onnx.checker passes, ONNX Runtime gives the same outputs, the
    interface is unchanged and the input model is untouched. With fuse_bn_into_conv, a Conv weight
    shared by windows must not be folded for all of them. `annotated`: shapes inferred for every
    intermediate (passes that need shapes fire); `overridable`: the Mul-by-one constants are also
    graph inputs, defaults a feed may override."""
    model = chain(blocks, seed)
    if overridable:
        model.graph.input.extend(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, [1]) for t in model.graph.initializer
                                 if t.name.startswith("one"))
    if annotated:
        model = onnx.shape_inference.infer_shapes(model)
    original = model.SerializeToString()
    passes = DEFAULT_PASSES + (["fuse_bn_into_conv"] if fuse_bn else [])

    result, run = run_in_windows(model, onnxoptimizer_tool(passes), window)

    assert model.SerializeToString() == original
    assert not run.discarded
    onnx.checker.check_model(result, full_check=True)
    assert [v.name for v in result.graph.input] == [v.name for v in model.graph.input]
    assert [v.name for v in result.graph.output] == [v.name for v in model.graph.output]
    equivalence = check_equivalence(model, result, [feed(seed)])
    assert equivalence.passed, equivalence.summary


def test_a_pattern_cut_by_the_first_sweep_is_fused_by_the_second():
    """Pad -> Conv with the cut of the first sweep between them (window 4, Pad is node 3)."""
    model = chain(["tanh", "tanh", "tanh", "pad_conv", "tanh", "tanh", "tanh"])
    assert op_types(model)[3:5] == ["Pad", "Conv"]

    result, run = run_in_windows(model, onnxoptimizer_tool(["fuse_pad_into_conv"]), 4)

    assert "Pad" not in op_types(result)
    # 9 nodes cut at 4 and 8; the 8 left after the fusion cut at 2 and 6 (offset by half a window)
    assert run.windows == 3 + 3
    assert check_equivalence(model, result, [feed()]).passed


def test_the_whole_graph_fuses_what_windows_fuse_on_a_local_pattern_chain():
    """Blocks of two adjacent nodes: each pair lies inside a window of at least one sweep unless
    both sweeps cut it, so windows of 8 leave at most a few of the 12 Pads unfused."""
    model = chain(["pad_conv", "tanh"] * 12)
    whole = onnxoptimizer.optimize(model, ["fuse_pad_into_conv"])
    windowed, _ = run_in_windows(model, onnxoptimizer_tool(["fuse_pad_into_conv"]), 8)
    assert op_types(whole).count("Pad") == 0
    assert op_types(windowed).count("Pad") <= 2


def _add_node_named_one(part: onnx.ModelProto) -> onnx.ModelProto:
    """A tool that, like onnxoptimizer, numbers the values it creates from "1" in every window:
    it routes the window's first output through a new Identity "1"."""
    result = onnx.ModelProto()
    result.CopyFrom(part)
    first_output = result.graph.output[0].name
    for node in result.graph.node:
        for i, name in enumerate(node.output):
            if name == first_output:
                node.output[i] = "1"
    result.graph.node.append(helper.make_node("Identity", ["1"], [first_output]))
    return result


def test_names_a_tool_creates_in_every_window_are_made_unique():
    model = chain(["tanh"] * 12)
    result, run = run_in_windows(model, _add_node_named_one, 3)
    onnx.checker.check_model(result, full_check=True)  # SSA: "1" defined twice would fail here
    created = [name for node in result.graph.node for name in node.output if name.startswith("1_")]
    assert len(created) == len(set(created)) == run.windows
    assert check_equivalence(model, result, [feed()]).passed


def _scale_weight_in_place(part: onnx.ModelProto, calls=[]) -> onnx.ModelProto:  # noqa: B006 - counts calls
    """A tool that, in the first window it sees, changes the shared weight under its own name (it
    sees only that window's readers) and compensates there with a Div, so the window still
    computes the same; every later window is returned as it came."""
    calls.append(None)
    if len(calls) > 1:
        return part
    result = onnx.ModelProto()
    result.CopyFrom(part)
    for tensor in result.graph.initializer:
        if tensor.name == "w_shared":
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 2, "w_shared"))
            for node in list(result.graph.node):
                if node.op_type == "Conv" and node.input[1] == "w_shared":
                    out = node.output[0]
                    node.output[0] = f"{out}_doubled"
                    result.graph.initializer.append(numpy_helper.from_array(np.array([2.0], np.float32), f"{out}_two"))
                    result.graph.node.append(helper.make_node("Div", [f"{out}_doubled", f"{out}_two"], [out]))
    sorted_graph = onnx.helper.make_graph(_topological(result.graph), result.graph.name, result.graph.input,
                                          result.graph.output, result.graph.initializer, value_info=result.graph.value_info)
    result.graph.CopyFrom(sorted_graph)
    return result


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    ready = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        node = next(n for n in pending if all(i in ready for i in n.input))
        pending.remove(node)
        ordered.append(node)
        ready.update(node.output)
    return ordered


def test_an_initializer_changed_in_one_window_is_renamed_and_the_others_keep_the_original():
    model = chain(["shared_conv_bn", "tanh", "tanh", "tanh", "tanh", "shared_conv_bn"])
    result, _ = run_in_windows(model, _scale_weight_in_place, 5)
    weights = {t.name: numpy_helper.to_array(t) for t in result.graph.initializer}
    original = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w_shared"))
    assert any(name.startswith("w_shared_w") for name in weights)
    conv_weights = [weights[node.input[1]] for node in result.graph.node if node.op_type == "Conv"]
    assert any(np.array_equal(w, original) for w in conv_weights)  # a window that did not change it
    assert check_equivalence(model, result, [feed()]).passed


def test_a_window_whose_output_the_tool_drops_is_kept_as_it_was():
    def drop_last_node(part):
        result = onnx.ModelProto()
        result.CopyFrom(part)
        del result.graph.node[-1]
        return result

    model = chain(["tanh"] * 6)
    result, run = run_in_windows(model, drop_last_node, 3)
    assert run.discarded and "kept as it was" in run.discarded[0]
    assert op_types(result) == op_types(model)
    assert check_equivalence(model, result, [feed()]).passed


def test_an_unused_initializer_and_an_initializer_output_survive():
    model = chain(["tanh"] * 6)
    model.graph.initializer.extend([numpy_helper.from_array(np.ones(2, np.float32), "unused"),
                                    numpy_helper.from_array(np.ones(3, np.float32), "const_out")])
    model.graph.output.append(helper.make_tensor_value_info("const_out", TensorProto.FLOAT, [3]))
    result, _ = run_in_windows(model, onnxoptimizer_tool(["eliminate_identity"]), 3)
    assert {"unused", "const_out"} <= {t.name for t in result.graph.initializer}


def test_optimize_uses_windows_above_the_window_size_only():
    model = chain(["pad_conv", "conv_add", "identity", "tanh"] * 4)
    whole = optimize(model, passes=DEFAULT_PASSES, window=None)
    windowed = optimize(model, passes=DEFAULT_PASSES, window=8)
    small = optimize(model, passes=DEFAULT_PASSES, window=len(model.graph.node))
    assert whole.report.figures["windows"] == small.report.figures["windows"] == 0
    assert windowed.report.figures["windows"] > 2
    assert op_types(small.model) == op_types(whole.model)
    assert check_equivalence(model, windowed.model, [feed()]).passed
    assert len(windowed.model.graph.node) <= len(model.graph.node) - 4  # the Identities at least


def test_a_window_of_fewer_than_two_nodes_is_a_usage_error():
    with pytest.raises(ConfigError, match="window=1"):
        optimize(chain(["tanh"] * 3), window=1)


# --- regressions found in review: each built to fail before its fix ---------------------------------


def _vi(name: str, shape=(1, 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes, inputs, outputs, initializers=(), *, ir_version: int = 8, opset: int = 17, **graph_fields):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers), **graph_fields)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def _tanh_mul_chain(count: int, *, ir_version: int) -> onnx.ModelProto:
    """x -> (Tanh -> Mul by one_i) * count, each one_i an initializer AND a graph input: an
    overridable default (every initializer of an IR 3 model is listed like this)."""
    nodes, current = [], "x"
    for i in range(count):
        nodes += [helper.make_node("Tanh", [current], [f"t{i}"]), helper.make_node("Mul", [f"t{i}", f"one{i}"], [f"m{i}"])]
        current = f"m{i}"
    ones = [numpy_helper.from_array(np.ones(1, np.float32), f"one{i}") for i in range(count)]
    # value_info on the intermediates: with shapes known, eliminate_nop_with_unit may drop a Mul by one
    typed = [_vi(name) for i in range(count) for name in (f"t{i}", f"m{i}") if name != current]
    return _model(nodes, [_vi("x"), *(_vi(t.name, (1,)) for t in ones)], [_vi(current)], ones, ir_version=ir_version, opset=11,
                  value_info=typed)


@pytest.mark.parametrize("ir_version", [3, 8])
def test_an_initializer_that_is_a_graph_input_stays_an_overridable_input(ir_version):
    model = _tanh_mul_chain(3, ir_version=ir_version)
    result, _ = run_in_windows(model, onnxoptimizer_tool(DEFAULT_PASSES), 2)
    assert {t.name for t in result.graph.initializer} == {"one0", "one1", "one2"}
    assert [i.name for i in result.graph.input] == ["x", "one0", "one1", "one2"]
    x = {"x": np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)}
    assert check_equivalence(model, result, [x]).passed
    if ir_version >= 4:  # ONNX Runtime lets a feed override an initializer only from IR 4 on
        overridden = {**x, "one1": np.full(1, 3.0, np.float32)}
        assert check_equivalence(model, result, [overridden]).passed


def test_an_ir3_model_given_new_initializers_becomes_ir4():
    """IR 3 wants every initializer listed as an input; the ones a pass creates are not."""
    nodes, current = [], "x"
    for i in range(3):
        nodes += [helper.make_node("Constant", [], [f"k{i}"], value=numpy_helper.from_array(np.full((1, 4), i, np.float32))),
                  helper.make_node("Add", [current, f"k{i}"], [f"a{i}"])]
        current = f"a{i}"
    model = _model(nodes, [_vi("x")], [_vi(current)], ir_version=3, opset=8)
    result, _ = run_in_windows(model, onnxoptimizer_tool(["extract_constant_to_initializer"]), 2)
    onnx.checker.check_model(result, full_check=True)
    assert result.ir_version == 4 and model.ir_version == 3


def test_nodes_out_of_topological_order_are_sorted_first():
    nodes, current = [], "x"
    for i in range(6):
        nodes += [helper.make_node("Tanh", [current], [f"t{i}"]), helper.make_node("Identity", [f"t{i}"], [f"i{i}"])]
        current = f"i{i}"
    model = _model(nodes[6:] + nodes[:6], [_vi("x")], [_vi(current)])
    result, _ = run_in_windows(model, onnxoptimizer_tool(["eliminate_identity"]), 3)
    onnx.checker.check_model(result, full_check=True)  # sorted, and every value still produced
    assert check_equivalence(model, result, [{"x": np.ones((1, 4), np.float32)}]).passed


def test_an_initializer_whose_doc_string_the_tool_drops_is_not_a_change():
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 4, 3, 3)).astype(np.float32), "w")
    weight.doc_string = "conv weight"
    nodes = [helper.make_node("Conv", [f"c{i - 1}" if i else "x", "w"], [f"c{i}"], pads=[1, 1, 1, 1]) for i in range(8)]
    model = _model(nodes, [_vi("x", SHAPE)], [_vi("c7", SHAPE)], [weight])
    result, _ = run_in_windows(model, onnxoptimizer_tool(["eliminate_identity"]), 2)
    assert [(t.name, t.doc_string) for t in result.graph.initializer] == [("w", "conv weight")]
    assert not optimize(model, passes=["eliminate_identity"], window=2).modified


def test_a_sparse_initializer_is_kept():
    nodes = [helper.make_node("Tanh", ["x"], ["t0"]), helper.make_node("Add", ["t0", "sp"], ["a"]),
             helper.make_node("Identity", ["a"], ["i"]), helper.make_node("Tanh", ["i"], ["t1"]), helper.make_node("Tanh", ["t1"], ["t2"])]
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([2.0], np.float32), "sp"),
                                       numpy_helper.from_array(np.array([1], np.int64), "sp_idx"), [4])
    model = _model(nodes, [_vi("x")], [_vi("t2")], sparse_initializer=[sparse])
    result = optimize(model, passes=DEFAULT_PASSES, window=2)
    assert [s.values.name for s in result.model.graph.sparse_initializer] == ["sp"]
    assert check_equivalence(model, result.model, [{"x": np.ones((1, 4), np.float32)}]).passed


def test_a_minted_name_never_repeats_a_name_defined_inside_a_subgraph():
    shape = [1, 4, 5, 5]
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.normal(size=(1, 4, 1, 1)).astype(np.float32), "b"),
               numpy_helper.from_array(np.array([1.0], np.float32), "g1"), numpy_helper.from_array(np.array([0.0], np.float32), "g0")]
    # "_v_8_w0.0" is what the first window's new bias would be called: the then-branch owns it.
    then = helper.make_graph([helper.make_node("Neg", ["a"], ["_v_8_w0.0"])], "then", [], [_vi("_v_8_w0.0", shape)])
    other = helper.make_graph([helper.make_node("Abs", ["a"], ["e"])], "else", [], [_vi("e", shape)])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "b"], ["a"]),
             helper.make_node("Greater", ["g1", "g0"], ["cond"]), helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    model = _model(nodes, [_vi("x", shape)], [_vi("y", shape)], weights)
    result, _ = run_in_windows(model, onnxoptimizer_tool(["fuse_add_bias_into_conv"]), 2)
    onnx.checker.check_model(result, full_check=True)
