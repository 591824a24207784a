"""QDQ model rewrites (quant/float_counterpart.py, quant/qdq_optimize.py) that hand-made mutations
showed no other test could tell apart; each test names the mutation it kills. Expected values come
from the ONNX operator definitions or the documented rule, never from the code under test."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh
import onnx_ir as ir
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from qdq_strategies import chain_case, scales

from onnx2trt_check.quant.float_counterpart import dequantized_weight
from onnx2trt_check.quant.qdq_optimize import optimize_qdq


@given(st.integers(1, 4), st.integers(2, 5), st.data())
def test_a_per_channel_weight_dq_without_an_axis_attribute_scales_axis_1(rows, columns, data):
    # DequantizeLinear's axis defaults to 1 (a Gemm B [K, N] per output column is written so).
    # Kills "axis defaults to 0" in dequantized_weight: the float counterpart's weight was scaled
    # along the rows (or refused) where ONNX Runtime scales the columns.
    q = data.draw(hnp.arrays(np.int8, (rows, columns), elements=st.integers(-128, 127)))
    scale = data.draw(hnp.arrays(np.float32, columns, elements=st.floats(0.125, 10.0, width=32)))
    model = oh.make_model(oh.make_graph(
        [oh.make_node("DequantizeLinear", ["q", "s"], ["w"])], "g", [],
        [oh.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [rows, columns])],
        initializer=[nh.from_array(q, "q"), nh.from_array(scale, "s")]), opset_imports=[oh.make_opsetid("", 13)])
    dq = next(iter(ir.from_proto(model).graph))
    expected = q.astype(np.float32) * scale[None, :]  # (q - 0) * scale[column]
    assert np.array_equal(dequantized_weight(dq), expected)


@given(scales, scales)
def test_a_merged_chain_takes_the_coarser_scale(s1, s2):
    # "Different scales: one Q/DQ at the coarser scale s_c replaces the chain." Kills keeping the
    # finer one: its outputs stay inside the test's change bound, so only the scale tells.
    result = optimize_qdq(chain_case(s1, s2))
    graph = result.model.graph
    initializers = {t.name: nh.to_array(t) for t in graph.initializer}
    kept = {float(initializers[n.input[1]].reshape(-1)[0]) for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert kept == {float(np.float32(max(s1, s2)))}


@given(st.integers(1, 4), st.integers(2, 5), st.data())
def test_folding_a_per_channel_weight_quantize_without_an_axis_attribute_quantizes_axis_1(rows, columns, data):
    # QuantizeLinear's axis defaults to 1 as well. Kills "axis defaults to 0" in
    # fold_weight_quantize: the folded int8 weight was quantized along the rows (or refused).
    w = data.draw(hnp.arrays(np.float32, (rows, columns), elements=st.floats(-10.0, 10.0, width=32)))
    scale = data.draw(hnp.arrays(np.float32, columns, elements=st.floats(0.125, 1.0, width=32)))
    zero = np.zeros(columns, np.int8)
    model = oh.make_model(oh.make_graph(
        [oh.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]), oh.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
         oh.make_node("MatMul", ["x", "wd"], ["y"])], "g",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, rows])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, columns])],
        initializer=[nh.from_array(w, "w"), nh.from_array(scale, "s"), nh.from_array(zero, "z")]), opset_imports=[oh.make_opsetid("", 13)])
    folded = [nh.to_array(t) for t in optimize_qdq(model).model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims == [rows, columns]]
    expected = np.clip(np.rint(w / scale[None, :]), -128, 127).astype(np.int8)  # round half to even, per column
    assert len(folded) == 1 and np.array_equal(folded[0], expected)
