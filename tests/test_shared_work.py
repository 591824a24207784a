"""Nothing done twice in one `pytest --model` run: one ONNX Runtime session per distinct graph (and
optimization level), the transform items and the pipeline sharing runs and steps (PipelineMemo)."""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import pipeline
from onnx2trt_check.transforms.pipeline import PipelineMemo
from onnx2trt_check.transforms.run import TransformSettings, run_transforms

MODELS = Path(__file__).resolve().parent.parent / "models"
SETTINGS = TransformSettings(scores=(("y", (0.5,)),))


def conv_bn_sigmoid():
    """x -> Conv -> BN -> Relu -> Conv -> Sigmoid: fold_conv_bn and remove_output_sigmoid modify it."""
    rng = np.random.default_rng(0)
    arrays = {"w1": rng.normal(size=(4, 3, 3, 3)), "g": rng.uniform(0.5, 1.5, 4), "b": rng.normal(size=4),
              "m": rng.normal(size=4), "v": rng.uniform(0.5, 1.5, 4), "w2": rng.normal(size=(2, 4, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4, name="conv1"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["logits"], name="conv2"),
             helper.make_node("Sigmoid", ["logits"], ["y"], name="sigmoid")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def feeds():
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(1, 3, 6, 6)).astype(np.float32)} for _ in range(3)]


@pytest.fixture
def runs(monkeypatch):
    """Every run_model call the pipeline makes, by the id of the model run."""
    made = []

    def counting(model, feeds, **kwargs):
        made.append(id(model))
        return run_model(model, feeds, **kwargs)

    monkeypatch.setattr(pipeline, "run_model", counting)
    return made


def summaries(result):
    return [step.summary() for step in result.steps]


def test_items_and_pipeline_share_runs_and_the_first_modifying_step(runs):
    model, data = conv_bn_sigmoid(), feeds()
    alone = run_transforms(model, data, SETTINGS)
    runs.clear()
    reference_calls = []
    memo = PipelineMemo(model, data, reference=lambda: reference_calls.append(1) or run_model(model, data))
    items = [run_transforms(model, data, SETTINGS, names=[name], memo=memo) for name in SETTINGS.selected()]
    modified = [r.steps[0].name for r in items if r.steps[0].modified]
    assert modified == ["fold_conv_bn", "remove_output_sigmoid"]
    assert id(model) not in runs and reference_calls == [1]  # the model's own outputs came from the reference
    assert len(runs) == 2  # each modifying transform's result, once
    runs.clear()
    shared = run_transforms(model, data, SETTINGS, memo=memo)
    # fold_conv_bn's result and outputs are the item's; only remove_output_sigmoid on it is new.
    assert len(runs) == 1 and reference_calls == [1]
    assert summaries(shared) == summaries(alone) and shared.passed
    assert shared.model.SerializeToString() == alone.model.SerializeToString()


def test_a_failing_reference_leaves_the_run_to_the_pipeline(runs):
    model, data = conv_bn_sigmoid(), feeds()

    def broken():
        raise RuntimeError("ORT cannot run it")

    memo = PipelineMemo(model, data, reference=broken)
    result = run_transforms(model, data, SETTINGS, names=["fold_conv_bn"], memo=memo)
    assert id(model) in runs and result.passed and result.steps[0].modified


def test_other_feeds_or_another_model_share_nothing(runs):
    model, data = conv_bn_sigmoid(), feeds()
    memo = PipelineMemo(model, data, reference=lambda: pytest.fail("the reference is for the memo's feeds only"))
    other = [dict(feed) for feed in data]  # equal values, other dicts: not the memo's feeds
    run_transforms(model, other, SETTINGS, names=["fold_conv_bn"], memo=memo)
    assert id(model) in runs
    copy = conv_bn_sigmoid()  # an equal model, another object: its steps are its own
    assert memo.known_step(pipeline.get_transform("fold_conv_bn"), copy, {}) is None


def test_results_are_the_callers_to_edit():
    """A result the memo keeps, or the unchanged input, is handed out as a copy: editing it changes
    neither the caller's model nor what the next pipeline starts from."""
    model, data = conv_bn_sigmoid(), feeds()
    original = model.SerializeToString()
    alone = run_transforms(model, data, SETTINGS)
    memo = PipelineMemo(model, data, reference=lambda: run_model(model, data))
    item = run_transforms(model, data, SETTINGS, names=["fold_conv_bn"], memo=memo)
    del item.model.graph.node[:]
    unchanged = run_transforms(model, data, SETTINGS, names=["fold_gemm_bn"], memo=memo)
    assert not unchanged.steps[0].modified and unchanged.model is not model
    del unchanged.model.graph.node[:]
    shared = run_transforms(model, data, SETTINGS, memo=memo)
    assert model.SerializeToString() == original
    assert summaries(shared) == summaries(alone) and shared.model.SerializeToString() == alone.model.SerializeToString()


def weights_digest(names, values) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(zip(names, values), key=lambda pair: pair[0]):
        digest.update(name.encode() + value.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", ["bn_gemm_classifier", "mobilenetv2_classifier"])
def test_a_default_run_makes_one_session_per_distinct_graph(pytester, monkeypatch, name):
    """Every session of a default run, keyed by the graph's bytes, the weights handed over and the
    optimization level: none is made twice (before sharing, the model itself had five sessions)."""
    shutil.copy(MODELS / f"{name}.onnx", pytester.path)
    weights: dict[int, str] = {}
    sessions = collections.Counter()
    add, init = ort.SessionOptions.add_external_initializers, ort.InferenceSession.__init__

    def recording_add(options, names, values):
        weights[id(options)] = weights_digest(names, values)
        return add(options, names, values)

    def recording_init(session, model, sess_options=None, *args, **kwargs):
        data = Path(model).read_bytes() if isinstance(model, str | os.PathLike) else bytes(model)
        level = str(sess_options.graph_optimization_level) if sess_options is not None else ""
        sessions[hashlib.sha256(data).hexdigest(), weights.pop(id(sess_options), ""), level] += 1
        return init(session, model, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort.SessionOptions, "add_external_initializers", recording_add)
    monkeypatch.setattr(ort.InferenceSession, "__init__", recording_init)
    result = pytester.runpytest_inprocess("--model", f"{name}.onnx", "-p", "no:randomly")
    assert result.ret == 0
    assert len(sessions) >= 5  # reference, ort, the fp16 probe, ort-fp16, the emulation, transform results
    assert [count for count in sessions.values() if count > 1] == []
