"""Reduction to a minimal failing subgraph: planted faults, boundaries, feeds, the saved bundle."""

import bisect_models as bm
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.bisection.reduce import reduce_failing_subgraph
from onnx2trt_check.bisection.sensitivity import fp16_emulation
from onnx2trt_check.data import feeds_from_npz
from onnx2trt_check.errors import ConfigError
from onnx2trt_check.model import resolve_input_specs
from onnx2trt_check.runtime import run_model

FEEDS = bm.feeds()


def overflows_in_fp16(model, feeds):
    return any(not np.all(np.isfinite(v)) for result in run_model(fp16_emulation(model), feeds) for v in result.values())


@pytest.mark.parametrize("depth,fault,residual", [(5, 0, False), (40, 20, False), (40, 24, True), (200, 196, True)])
def test_fp16_overflow_reduces_to_the_faulty_node(depth, fault, residual):
    model = bm.fp16_overflow(depth, fault, residual=residual)
    reduced = reduce_failing_subgraph(model, FEEDS, overflows_in_fp16)
    assert bm.node_name(fault) in reduced.nodes and len(reduced.nodes) <= 3
    assert [n.name for n in reduced.model.graph.node] == reduced.nodes
    onnx.checker.check_model(reduced.model)
    assert overflows_in_fp16(reduced.model, reduced.feeds)


def test_inputs_carry_the_original_intermediate_values():
    model = bm.fp16_overflow(40, 20)
    reduced = reduce_failing_subgraph(model, FEEDS, overflows_in_fp16)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info("t19", onnx.TensorProto.FLOAT, None))
    originals = run_model(probe, FEEDS)
    assert [list(feed) for feed in reduced.feeds] == [["t19"], ["t19"]]
    for feed, original in zip(reduced.feeds, originals):
        np.testing.assert_array_equal(feed["t19"], original["t19"])


@given(depth=st.integers(2, 120), position=st.floats(0, 1), residual=st.booleans())
def test_any_single_node_predicate_reduces_to_that_node(depth, position, residual):
    fault = bm.node_name(int(position * (depth - 1)))
    model = bm.chain_model(depth, residual=residual)
    reduced = reduce_failing_subgraph(model, FEEDS[:1], lambda m, f: fault in {n.name for n in m.graph.node})
    assert reduced.nodes == [fault]
    assert reduced.checks <= 4 * depth.bit_length() + 4  # bisection, then one linear pass over <= 3 nodes


def test_a_residual_side_branch_is_pruned_by_the_linear_phase():
    model = bm.chain_model(12, residual=True)

    def needs_add_and_conv(m, feeds):
        names = {n.name for n in m.graph.node}
        return {"n7_add", "n4_conv"} <= names

    reduced = reduce_failing_subgraph(model, FEEDS[:1], needs_add_and_conv)
    assert sorted(reduced.nodes) == ["n4_conv", "n7_add"]
    assert sorted(i.name for i in reduced.model.graph.input) == ["t3", "t6"]


def test_a_model_that_does_not_fail_is_refused():
    with pytest.raises(ConfigError, match="still_fails is False"):
        reduce_failing_subgraph(bm.chain_model(8), FEEDS, overflows_in_fp16)


def test_save_writes_a_runnable_bundle_and_refuses_to_overwrite(tmp_path):
    reduced = reduce_failing_subgraph(bm.fp16_overflow(20, 8), FEEDS[:1], overflows_in_fp16)
    model_path, inputs_path = reduced.save(tmp_path / "bug")
    inputs = dict(np.load(inputs_path))
    assert overflows_in_fp16(onnx.load(model_path), [inputs])
    with pytest.raises(ConfigError, match="already exists"):
        reduced.save(tmp_path / "bug")
    reduced.save(tmp_path / "bug", force=True)
    assert sorted(p.name for p in (tmp_path / "bug").iterdir()) == ["inputs.npz", "model.onnx"]


def test_several_feeds_are_saved_stacked_as_inputs_reads_them(tmp_path):
    reduced = reduce_failing_subgraph(bm.fp16_overflow(20, 8), FEEDS, overflows_in_fp16)
    model_path, inputs_path = reduced.save(tmp_path)
    saved = np.load(inputs_path)
    assert sorted(saved) == ["t7"] and saved["t7"].shape[0] == 2  # one feed per slice
    specs = resolve_input_specs(onnx.load(str(model_path)))
    feeds = feeds_from_npz(inputs_path, specs)  # what `pytest --model model.onnx --inputs inputs.npz` reads
    assert len(feeds) == 2 and all(np.array_equal(f["t7"], r["t7"]) for f, r in zip(feeds, reduced.feeds))
