"""task_metrics: top-1/top-5 against labels, user metric functions, drops and the gate; user_code's
FILE.py[:func] parsing; model_size's parameter and channel figures."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from transform_strategies import GraphParts, tensor_info

from onnx2trt_check.errors import CheckError
from onnx2trt_check.model_size import channel_differences, layer_channels, mac_count, parameter_count
from onnx2trt_check.task_metrics import (
    TaskMetric,
    check_label_rows,
    classification_figures,
    excessive_drops,
    load_task_metric,
    metric_drops,
    stacked_outputs,
)
from onnx2trt_check.user_code import split_reference


@given(st.integers(6, 12).flatmap(lambda c: st.tuples(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.just(c)), elements=st.floats(-5, 5, width=32), unique=False),
    st.data())))
def test_top1_and_top5_count_rows_by_brute_force(case):
    scores, data = case
    labels = data.draw(hnp.arrays(np.int64, len(scores), elements=st.integers(0, scores.shape[1] - 1)))
    figures = classification_figures({"logits": scores}, labels)
    top1 = top5 = 0
    for row, label in zip(scores, labels):  # brute force, ties broken towards the lower index like argmax
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))
        top1 += order[0] == label
        top5 += label in order[:5]
    assert figures["top1"] == pytest.approx(top1 / len(labels))
    assert figures["top5"] == pytest.approx(top5 / len(labels))


def test_no_top5_with_five_classes_or_fewer_and_the_first_fitting_output_is_scored():
    labels = np.array([0, 1])
    outputs = {"features": np.zeros((2, 3, 4), np.float32), "probs": np.eye(5, dtype=np.float32)[[0, 2]]}
    assert classification_figures(outputs, labels) == {"top1": 0.5}
    with pytest.raises(CheckError, match="no output of class scores has one row per label"):
        classification_figures({"probs": np.eye(5, dtype=np.float32)}, labels)


def test_outputs_are_concatenated_by_batch_stacked_by_feed_or_listed_when_ragged():
    feeds = [{"logits": np.ones((2, 3)), "score": np.float32(1), "boxes": np.zeros((k, 4))} for k in (1, 3)]
    stacked = stacked_outputs(feeds)
    assert stacked["logits"].shape == (4, 3) and stacked["score"].shape == (2,)
    assert isinstance(stacked["boxes"], list) and [b.shape for b in stacked["boxes"]] == [(1, 4), (3, 4)]


def test_user_metric_gets_outputs_and_labels_and_bad_results_are_named(tmp_path):
    script = tmp_path / "m.py"
    script.write_text("def metric(outputs, labels):\n    return {'mean': float(outputs['y'].mean()), 'n': len(labels)}\n"
                      "def broken(outputs, labels):\n    return {'x': float('nan')}\n"
                      "def wrong(outputs, labels):\n    return [1]\n")
    np.save(tmp_path / "l.npy", np.arange(4))
    metric = load_task_metric(labels=tmp_path / "l.npy", metric=str(script))
    assert metric.evaluate([{"y": np.full((2, 1), 3.0)}, {"y": np.full((2, 1), 5.0)}]) == {"mean": 4.0, "n": 4.0}
    for name, fragment in (("broken", "must be finite"), ("wrong", "returned list")):
        with pytest.raises(CheckError, match=fragment):
            load_task_metric(metric=f"{script}:{name}").evaluate([{"y": np.ones(1)}])


@pytest.mark.parametrize(("labels", "metric", "fragment"), [
    ("missing.npy", None, "does not exist"),
    ("floats.npy", None, "not one class index per row"),
    (None, "nothing.py", "not an existing .py file"),
    (None, "m.py:absent", "has no function 'absent'"),
])
def test_bad_options_are_one_line_errors(tmp_path, labels, metric, fragment):
    np.save(tmp_path / "floats.npy", np.zeros((3, 2), np.float32))
    (tmp_path / "m.py").write_text("x = 1\n")
    with pytest.raises(CheckError, match=fragment):
        load_task_metric(labels=labels and tmp_path / labels, metric=metric and str(tmp_path / metric))


def test_labels_must_number_the_feeds_or_their_rows():
    feeds = [{"x": np.zeros((2, 3))}] * 3
    check_label_rows(np.arange(3), feeds)
    check_label_rows(np.arange(6), feeds)
    with pytest.raises(CheckError, match="holds 5 labels, the input data 3 feed"):
        check_label_rows(np.arange(5), feeds)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.5))
def test_a_drop_fails_only_beyond_the_limit(reference, value, limit):
    drops = metric_drops({"top1": reference}, {"top1": value})
    assert drops == {"top1": reference - value}
    assert bool(excessive_drops(drops, limit)) == (reference - value > limit * (1 + 1e-9) + 1e-12)
    assert excessive_drops(drops, None) == {}


def test_exactly_the_limit_is_not_a_failure_despite_float_roundoff():
    assert 0.95 - 0.94 > 0.01  # the float subtraction overshoots
    assert excessive_drops(metric_drops({"top1": 0.95}, {"top1": 0.94}), 0.01) == {}


def test_task_metric_is_a_plain_objective():
    metric = TaskMetric(np.array([1, 0]), None, "labels")
    assert metric.evaluate([{"p": np.array([[0.1, 0.9]], np.float32)}, {"p": np.array([[0.2, 0.1]], np.float32)}]) == {"top1": 1.0}


@pytest.mark.parametrize(("text", "expected"), [
    ("a.py", ("a.py", "d")), ("a.py:f", ("a.py", "f")), ("C:\\x.py", ("C:\\x.py", "d")), ("C:\\x.py:g", ("C:\\x.py", "g")),
])
def test_script_references(text, expected):
    path, name = split_reference(text, "d")
    assert (str(path), name) == expected


def _conv(c_in: int, c_out: int, k: int, size: int) -> onnx.ModelProto:
    parts = GraphParts()
    parts.node("Conv", ["x", parts.const("w", np.ones((c_out, c_in, k, k))), parts.const("b", np.ones(c_out))], ["y"])
    return parts.model([tensor_info("x", (1, c_in, size, size))], [tensor_info("y", None)])


def test_parameters_and_macs_of_a_conv_by_the_formula():
    model = _conv(3, 8, 3, 10)
    assert parameter_count(model) == 8 * 3 * 9 + 8
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((16, 3, 3, 3), np.float32), "w_before_pruning"))
    assert parameter_count(model) == 8 * 3 * 9 + 8  # an initializer nothing reads is no parameter
    macs, reason = mac_count(model, {"x": np.zeros((1, 3, 10, 10), np.float32)})
    assert not reason and macs >= 8 * 8 * 8 * 3 * 9  # C_out * H_out * W_out * C_in * k * k (plus the bias adds)
    assert macs <= 8 * 8 * 8 * (3 * 9 + 1)


def test_channel_differences_by_name_else_by_position():
    rows, how = channel_differences({"a": 16, "b": 32}, {"a": 8, "b": 32})
    assert how == "by name" and rows == [{"layer": "a", "original_layer": "a", "original": 16, "derived": 8}]
    rows, how = channel_differences({"a": 16, "b": 32}, {"x": 16, "y": 24})
    assert how.startswith("by position") and rows == [{"layer": "y", "original_layer": "b", "original": 32, "derived": 24}]


def test_quantized_weights_count_as_parameters_and_their_scales_do_not():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], axis=0), onnx.helper.make_node("Conv", ["x", "w"], ["y"])],
        "q", [tensor_info("x", (1, 3, 4, 4))], [tensor_info("y", None)],
        initializer=[onnx.numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "wq"),
                     onnx.numpy_helper.from_array(np.ones(4, np.float32), "s"), onnx.numpy_helper.from_array(np.zeros(4, np.int8), "z")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    assert parameter_count(model) == 12
    assert layer_channels(model) == {"Conv#1": 4}
