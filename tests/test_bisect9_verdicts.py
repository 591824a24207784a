"""bisect's layerwise verdicts on faults planted in foreign models (/work/zoo11), each reduced to a
tiny model: an identical -inf mask Constant is not the first divergence, a failure the unoptimized
run shows too is not blamed on ONNX Runtime's optimized run, a divergence that does not reach the
outputs says so, and a model ONNX Runtime refuses is one line, exit 4."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx2trt_check as o2t
from onnx2trt_check.bisection.layerwise import layerwise_compare
from onnx2trt_check.bisection.run import OPTIMIZED_ONLY
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError


def _model(nodes, inits, size=64):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _save(tmp_path, model, x):
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "m.npz", x=x)
    return tmp_path / "m.onnx", tmp_path / "m.npz"


def test_an_identical_minus_inf_mask_constant_is_not_the_first_divergence():
    # albert_ts / bart_ts with an fp16 overflow planted: the attention mask's -inf Constant (identical
    # in both runs) was named first divergent, before the overflowing MatMul.
    mask = helper.make_node("Constant", [], ["mask"], name="mask_constant",
                            value=numpy_helper.from_array(np.array([-np.inf], np.float32)))
    model = _model([mask, helper.make_node("Max", ["x", "mask"], ["y"], name="max")], {}, size=4)
    target = _model([mask, helper.make_node("Max", ["x", "mask"], ["m"], name="max"),
                     helper.make_node("Mul", ["m", "two"], ["y"], name="wrong")], {"two": np.array([2.0], np.float32)}, size=4)
    feeds = [{"x": np.arange(1, 5, dtype=np.float32)}]
    assert layerwise_compare(model, model, feeds).first_divergent is None
    assert layerwise_compare(model, target, feeds).first_divergent.nodes == ["wrong"]


def test_a_failure_within_the_layer_floor_is_not_blamed_on_the_optimized_run(tmp_path):
    # x + 1000 - 1000 on one element in fp16: 0.3 -> 0.5, beyond atol at 32 dB (above the 20 dB
    # layer floor). cpu-fp16-emu runs unoptimized, so "the optimized run did it" was false.
    bias = np.zeros(64, np.float32)
    bias[0] = 1000.0
    model = _model([helper.make_node("Add", ["x", "b"], ["s"], name="add"), helper.make_node("Sub", ["s", "b"], ["y"], name="sub")], {"b": bias})
    # The other elements vary (0.5..3): 63 equal ones made y an offset-dominated output, whose
    # varying part the SQNR floor now judges (plant12), and 'sub' a divergent layer at 10.8 dB.
    x = np.linspace(0.5, 3.0, 64, dtype=np.float32)
    x[0] = 0.3
    path, inputs = _save(tmp_path, model, x)
    outcome = o2t.bisect(path, target="cpu-fp16-emu", inputs=inputs, fp16_no_fallback=True)
    assert outcome.failed and outcome.document["layerwise"]["first_divergent"] is None
    assert OPTIMIZED_ONLY not in outcome.lines[-1]
    assert "raise the floor" in outcome.lines[-1]


def test_a_divergence_that_does_not_reach_the_outputs_says_so(tmp_path):
    # x * 1e5 overflows fp16 to inf, Sigmoid saturates to 1 in both runs: the outputs pass.
    model = _model([helper.make_node("Mul", ["x", "k"], ["big"], name="scale"), helper.make_node("Sigmoid", ["big"], ["y"], name="gate")],
                   {"k": np.array([1e5], np.float32)}, size=8)
    path, inputs = _save(tmp_path, model, np.linspace(0.8, 2.0, 8, dtype=np.float32))
    outcome = o2t.bisect(path, target="cpu-fp16-emu", inputs=inputs, fp16_no_fallback=True)
    assert not outcome.failed
    assert outcome.document["layerwise"]["first_divergent"]["nodes"] == ["scale"]
    assert "within tolerance on its own run" in outcome.lines[-1]


def test_a_model_onnx_runtime_refuses_is_one_line_exit_4(tmp_path, capsys):
    # Two nodes of one name (resnet_ts with a renamed Conv): ORT refuses to load it. Without the
    # fallback (which needs ORT's run and says so) the reference run's traceback reached the user.
    model = _model([helper.make_node("Relu", ["x"], ["r"], name="same"), helper.make_node("Neg", ["r"], ["y"], name="same")], {}, size=4)
    path, inputs = _save(tmp_path, model, np.ones(4, np.float32))
    with pytest.raises(ConfigError, match="ONNX Runtime cannot run"):
        o2t.bisect(path, target="ort-fp16", inputs=inputs, fp16_no_fallback=True)
    assert main(["bisect", str(path), "--target", "cpu-fp16-emu", "--fp16-no-fallback", "--inputs", str(inputs)]) == 4
    assert "Traceback" not in capsys.readouterr().err


def _chain(nodes, inits, size=8):
    return _model([helper.make_node(op, ins, [out], name=name) for name, op, ins, out in nodes], inits, size=size)


def test_reduce_keeps_the_overflowing_node_not_a_reader_of_its_overflow(tmp_path):
    # bart_ts with fc2/MatMul overflowing was reduced to the LayerNorm 3 nodes later, fed 1e5 as
    # an input: true of any reader, and the planted node was not in the saved subgraph.
    # A side branch between them (bart: the decoder's embeddings) makes the first bisection overshoot.
    model = _chain([("scale", "Mul", ["x", "k"], "big"), ("side", "Abs", ["x"], "ax"), ("shift", "Add", ["big", "ax"], "moved"),
                    ("neg", "Neg", ["moved"], "y")], {"k": np.array([5e4], np.float32)})  # k itself fits fp16
    path, inputs = _save(tmp_path, model, np.linspace(1.5, 3.0, 8, dtype=np.float32))
    outcome = o2t.bisect(path, target="cpu-fp16-emu", mode="reduce", inputs=inputs, output_dir=tmp_path / "bug")
    assert outcome.document["nodes"] == ["scale"]
    saved = onnx.load(tmp_path / "bug" / "model.onnx")
    assert [n.name for n in saved.graph.node] == ["scale"] and [i.name for i in saved.graph.input] == ["x"]


def test_reduce_names_unnamed_nodes_as_every_report_and_keeps_constants_inside(tmp_path):
    # unnamed_nodes.onnx was reduced to "Mul#5" (every other report: Mul(silu_1)); a ts export's
    # Identity of a weight and a Constant became inputs of the saved model (LayerNorm weights, Resize scales).
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([5e4], np.float32))),
             helper.make_node("Identity", ["w"], ["w_shared"]),
             helper.make_node("Mul", ["x", "w_shared"], ["xw"]),
             helper.make_node("Mul", ["xw", "k"], ["y"])]
    model = _model(nodes, {"w": np.full(8, 2.0, np.float32)}, size=8)
    path, inputs = _save(tmp_path, model, np.linspace(0.8, 2.0, 8, dtype=np.float32))
    outcome = o2t.bisect(path, target="cpu-fp16-emu", mode="reduce", inputs=inputs, output_dir=tmp_path / "bug")
    assert outcome.document["nodes"] == ["Mul(y)"]
    saved = onnx.load(tmp_path / "bug" / "model.onnx")
    assert [i.name for i in saved.graph.input] == ["xw"]
    assert sorted(np.load(tmp_path / "bug" / "inputs.npz")) == ["xw"]


def test_an_overflow_in_a_compared_tensor_raises_no_numpy_warning():
    # Every bisect of an fp16 overflow printed "RuntimeWarning: invalid value encountered in subtract".
    import warnings

    from onnx2trt_check.compare import Tolerance, compare_output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = compare_output("t", [np.array([np.inf, 1.0], np.float32)], [np.array([np.inf, 2.0], np.float32)], Tolerance(atol=0.1, rtol=0.0))
    assert not stats.passed and stats.max_abs == 1.0


def test_the_json_never_names_a_removed_artifact_file(tmp_path):
    # The document's "artifact" was /tmp/onnx2trt_check-bisect-*/m.fp16.onnx, deleted when the call returned.
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], {}, size=4)
    path, inputs = _save(tmp_path, model, np.ones(4, np.float32))
    built = o2t.bisect(path, target="cpu-fp16-emu", inputs=inputs).document["artifact"]
    assert "temporary folder, removed" in built and not built.startswith("/")
    assert o2t.bisect(path, target="ort", inputs=inputs).document["artifact"] == str(path)
