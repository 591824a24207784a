"""protos: header copies, names read through subgraphs, light copies without the large weights, and
the pipeline's structure check built on them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check import protos
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.pipeline import check_structure
from onnx2trt_check.transforms.simplify import optimize

DTYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]


@given(array=st.sampled_from(DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=4, max_side=5))))
def test_raw_data_bytes_is_what_numpy_helper_writes(array):
    tensor = numpy_helper.from_array(array, "t")
    assert protos.raw_data_bytes(tensor) == len(tensor.raw_data) == array.nbytes


def test_four_bit_types_take_half_a_byte_per_value():
    tensor = TensorProto(name="t", data_type=TensorProto.INT4, dims=[3, 3])
    assert protos.raw_data_bytes(tensor) == 5


def _model(weight_bytes: int, *, ir_version: int = 8, weight_as_input: bool = False) -> onnx.ModelProto:
    """y = x + w + b, with w of `weight_bytes` bytes (float32) and b small."""
    n = weight_bytes // 4
    w = numpy_helper.from_array(np.arange(n, dtype=np.float32), "w")
    b = numpy_helper.from_array(np.ones(n, np.float32) if n <= 16 else np.ones(1, np.float32), "b")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])]
    if weight_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [n]))
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Add", ["s", "b"], ["y"])], "g", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="exporter", doc_string="doc")
    model.ir_version = ir_version
    model.metadata_props.add(key="k", value="v")
    return model


def test_without_large_weights_sets_aside_only_large_raw_data_weights():
    model = _model(1 << 20)
    light, stash = protos.without_large_weights(model, 64 * 1024)
    assert list(stash) == ["w"]
    assert [t.name for t in light.graph.initializer] == ["b"]
    placeholder = next(i for i in light.graph.input if i.name == "w")
    assert placeholder.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_value for d in placeholder.type.tensor_type.shape.dim] == [1 << 18]
    assert (light.producer_name, light.doc_string, light.ir_version) == ("exporter", "doc", 8)
    assert [(p.key, p.value) for p in light.metadata_props] == [("k", "v")]
    assert light.ByteSize() < 4096 and len(model.graph.initializer) == 2  # the input is untouched


def test_a_weight_already_listed_as_a_graph_input_stays_where_it_is():
    """IR 3 models list initializers among the inputs too: no second input of that name."""
    model = _model(1 << 20, ir_version=3, weight_as_input=True)
    light, stash = protos.without_large_weights(model, 64 * 1024)
    assert not stash
    assert [i.name for i in light.graph.input] == ["x", "w"]


def test_optimize_keeps_a_large_weight_that_is_also_a_graph_input():
    model = _model(1 << 20, ir_version=3, weight_as_input=True)
    result = optimize(model, passes=["eliminate_identity"])
    assert [i.name for i in result.model.graph.input] == ["x", "w"]
    assert {t.name for t in result.model.graph.initializer} == {"w", "b"}


def test_check_structure_finds_a_large_weight_with_short_raw_data():
    model = _model(1 << 20)
    check_structure(model)
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:-4]
    with pytest.raises(onnx.checker.ValidationError, match="'w' holds 1048572 bytes of raw_data.*1048576"):
        check_structure(model)


def test_check_structure_still_runs_the_checker_on_the_graph():
    model = _model(1 << 20)
    model.graph.node[1].input[0] = "nowhere"
    with pytest.raises(onnx.checker.ValidationError):
        check_structure(model)


def test_names_read_include_what_nested_subgraphs_capture_but_not_their_own_names():
    inner = helper.make_graph([helper.make_node("Add", ["outer_a", "local"], ["inner_out"]),
                               helper.make_node("Relu", ["x_loop"], ["local"])], "inner",
                              [], [helper.make_tensor_value_info("inner_out", TensorProto.FLOAT, [1])])
    branch = helper.make_graph([helper.make_node("If", ["cond2"], ["branch_out"], then_branch=inner, else_branch=inner),
                                helper.make_node("Identity", ["outer_b"], ["x_loop"])], "branch",
                               [], [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    assert set(protos.names_read(node)) == {"cond", "cond2", "outer_a", "outer_b"}


def test_model_with_graph_runs_like_the_model():
    model = _model(64)
    rebuilt = protos.model_with_graph(model, model.graph)
    x = {"x": np.ones(16, np.float32)}
    np.testing.assert_array_equal(run_model(rebuilt, [x])[0]["y"], run_model(model, [x])[0]["y"])
    assert rebuilt.SerializeToString() == model.SerializeToString()
