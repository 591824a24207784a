"""zoo16 (F4) and the lead's TopK case: integer outputs (an argmax mask, labels, a TopK's indices)
were judged by figures of class numbers beside their agreement.

* int8: an int8 DeepLab's argmax mask with 97.9% of its pixels equal (floor 95%) failed at 19.8 dB
  SQNR of class numbers, so `quantize` refused it and ort-int8 failed it.
* fp16: 18-28 of 32768 mask pixels flipped at near-ties failed the atol on class ids, while the
  logits passed at 36 dB ("would pass with atol=4").
* TopK: an honest int8 model's top-20 of 200 sigmoid scores, compared position by position, read
  75% agreement and 9.4 dB (its scores output passed); as the set each row selects, 97.9%.

Under a profile with an agreement floor (int8 95%, fp16 99%) a discrete output is now judged by that
agreement alone; a TopK's indices as sets. fp32 keeps its exact element-wise rule."""

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check import api
from onnx2trt_check.compare import allowed_disagreements, compare_output, selection_agreement
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, output_layouts


@given(st.sampled_from(["int8", "fp16"]), st.integers(1, 400), st.integers(0, 400), st.integers(1, 1000), st.booleans())
def test_a_discrete_output_is_judged_by_its_agreement_alone(profile, rows, changed, jump, boolean):
    """However far a changed label moves (class 3 -> 1003), only how many changed decides."""
    tolerance, changed = PRECISION_PROFILES[profile], min(changed, rows)
    reference = [np.array([[i % 2 == 0]], bool) if boolean else np.array([[3 + i % 5]]) for i in range(rows)]
    target = [np.logical_not(r) if boolean and i < changed else (r + jump if i < changed else r.copy()) for i, r in enumerate(reference)]
    stats = compare_output("mask", reference, target, tolerance)
    assert stats.passed == (changed <= allowed_disagreements(tolerance.min_top1, rows, alone=True)), stats.problems


def test_fp32_keeps_labels_exact():
    reference = [np.arange(200).reshape(1, 200)]
    target = [reference[0].copy()]
    target[0][0, 7] += 1
    assert not compare_output("mask", reference, target, PRECISION_PROFILES["fp32"]).passed


@given(st.integers(0, 2**16), st.integers(1, 12), st.integers(0, 3))
def test_selection_agreement_is_the_share_of_each_rows_items_kept_in_any_order(seed, k, replaced):
    rng = np.random.default_rng(seed)
    replaced = min(replaced, k)
    reference = [np.stack([rng.permutation(50)[:k] for _ in range(3)])]
    target = []
    for row in reference[0]:
        others = np.setdiff1d(np.arange(50), row)
        target.append(np.concatenate([rng.permutation(row[replaced:]), others[:replaced]]))
    assert selection_agreement(reference, [np.stack(target)], axis=1) == pytest.approx(1 - replaced / k)


def test_selection_agreement_follows_the_topk_axis():
    reference = [np.array([[[0, 1], [2, 3], [4, 5]]])]  # [1, k=3, 2]: TopK along axis 1
    swapped = [reference[0][:, ::-1, :]]
    assert selection_agreement(reference, swapped, axis=1) == 1.0
    assert selection_agreement(reference, swapped, axis=2) < 1.0


def _topk_model(largest: int) -> onnx.ModelProto:
    """Sigmoid scores of 200 items; the top 20 (largest=0: the bottom 20, a wrong selection)."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(32, 64)).astype(np.float32) / 6, rng.normal(size=(64, 200)).astype(np.float32) / 8
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["b"]),
             helper.make_node("Sigmoid", ["b"], ["s"]), helper.make_node("TopK", ["s", "k"], ["scores", "top"], axis=-1, largest=largest),
             helper.make_node("Identity", ["top"], ["idx"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 20]), helper.make_tensor_value_info("idx", TensorProto.INT64, ["N", 20])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.array([20], np.int64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_the_indices_of_a_topk_are_found_through_identity_and_its_values_are_ranked():
    assert output_layouts(_topk_model(1)) == {"idx": OutputLayout(topk_axis=-1), "scores": OutputLayout(ranked=True)}


@pytest.mark.parametrize(("largest", "outcome"), [(1, "passed"), (0, "failed")])
def test_an_int8_topk_is_judged_by_the_items_it_selects(tmp_path, largest, outcome):
    """Our int8 of the top-20 passes (order among near-equal scores is free); an int8 derived model
    that selects the bottom 20 fails against the original."""
    onnx.save(_topk_model(1), tmp_path / "original.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).normal(size=(64, 1, 32)).astype(np.float32))
    quantized = api.quantize(str(tmp_path / "original.onnx"), calibration_data=str(tmp_path / "calib.npz"))
    assert quantized.passed, quantized.verdict.failures
    model = quantized.model
    if not largest:
        next(n for n in model.graph.node if n.op_type == "TopK").attribute[-1].i = 0
        assert next(n for n in model.graph.node if n.op_type == "TopK").attribute[-1].name == "largest"
    onnx.save(model, tmp_path / "int8.onnx")
    result = api.check(str(tmp_path / "int8.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", "-k", "derived and parity",
                                                                 "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == outcome, parity.get("message")


def test_the_summary_row_reads_labels_by_their_agreement():
    """A passed TopK item read 'max abs 171, min SQNR 9.4 dB': figures of index numbers."""
    from onnx2trt_check.report import accuracy_figures

    labels_only = {"engine": "ort", "outputs": {"idx": {"discrete": True, "top1": 0.979, "sqnr_db": 9.4, "max_abs": 171.0}}}
    assert accuracy_figures(labels_only) == "[ort] top-1 97.9%"
    both = {"engine": "ort", "outputs": {**labels_only["outputs"], "scores": {"discrete": False, "top1": None, "sqnr_db": 52.9, "max_abs": 0.008}}}
    assert accuracy_figures(both) == "[ort] max abs 0.008, min SQNR 52.9 dB, top-1 97.9%"
