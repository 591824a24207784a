"""`pytest --model x.onnx --bisect`: a failed accuracy item names the faulty node, in the failure
output, the JSON report and the plot; passing items and TensorRT targets are handled."""

import json

import bisect_models as bm
import onnx
import pytest

from onnx2trt_check.fileio import unique_path
from onnx2trt_check.pytest_plugin.bisect import accuracy_target, finding_line
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.ort import OrtTarget

DEPTH, FAULT = 12, 5  # node n5_matmul has wrong weights in the artifact
ONLY_ACCURACY = ("-k", "accuracy")  # the other families' items are not this module's concern


def save(model: onnx.ModelProto, path) -> None:
    """The chain with its output shape declared (onnx.checker wants a shape field)."""
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(model.graph.output[0].name, onnx.TensorProto.FLOAT, [1, bm.CHANNELS, bm.SIZE, bm.SIZE]))
    onnx.save(model, str(path))


@pytest.fixture
def faulty_ort(pytester, monkeypatch):
    """m.onnx is the chain; the `ort` target deploys a copy whose node n5_matmul has wrong weights."""
    reference, target = bm.wrong_weights(DEPTH, FAULT)
    save(reference, pytester.path / "m.onnx")
    (pytester.path / "elsewhere").mkdir()
    faulty = pytester.path / "elsewhere" / "faulty.onnx"
    save(target, faulty)
    monkeypatch.setattr(OrtTarget, "artifact", lambda self, ctx: faulty)
    return faulty


def test_failed_accuracy_item_names_the_faulty_node_in_output_and_json(pytester, faulty_ort):
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", *ONLY_ACCURACY, "--bisect", "--report-json", "r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*onnx2trt_check bisect: ort*",
        "ort: artifact vs the model, ONNX Runtime with graph optimizations off",
        f"first divergent: node {bm.node_name(FAULT)}, tensor 't{FAULT}' (reference 't{FAULT}'): SQNR *",
        "layerwise: * tensors compared in * model executions",
        "error sources (exact inputs, inexact output)*",
        f"  {bm.node_name(FAULT)} (MatMul): *",
        "largest error amplification*",
    ])
    assert result.stdout.str().count("m.onnx::target::accuracy[ort]: first divergent") == 1
    result.stdout.fnmatch_lines(["*= onnx2trt_check bisect =*", f"m.onnx::target::accuracy[[]ort[]]: first divergent tensor 't{FAULT}' at node(s) {bm.node_name(FAULT)}*"])
    accuracy = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["target[ort]"]["checks"]["accuracy"]
    bisect = accuracy["figures"]["bisect"]
    assert accuracy["outcome"] == "failed" and "outputs" in accuracy["figures"]  # the check's own figures stay
    assert bisect["first_divergent_nodes"] == [bm.node_name(FAULT)] and bisect["artifact"] == str(faulty_ort)
    assert bisect["error_sources"][0]["node"] == bm.node_name(FAULT)
    assert [row["passed"] for row in bisect["tensors"]].index(False) == FAULT + 1  # graph input x, then t0..
    assert bisect["executions"] == 2 * 4 and bisect["plot"] is None


def test_without_the_flag_nothing_is_attached(pytester, faulty_ort):
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", *ONLY_ACCURACY, "--report-json", "r.json")
    result.assert_outcomes(failed=1)
    assert "onnx2trt_check bisect" not in result.stdout.str()
    accuracy = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["target[ort]"]["checks"]["accuracy"]
    assert "bisect" not in accuracy["figures"]


def test_plot_per_failed_item_never_overwrites(pytester, faulty_ort):
    plots = pytester.path / "plots"
    plots.mkdir()
    (plots / "m.ort.layerwise.html").write_text("mine")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", *ONLY_ACCURACY, "--bisect-plot", "plots", "--bisect-feeds", "1")
    result.assert_outcomes(failed=1)
    written = plots / "m.ort.layerwise.1.html"
    assert (plots / "m.ort.layerwise.html").read_text() == "mine"
    html = written.read_text()
    assert html.startswith("<!DOCTYPE html>") and f"first divergent: <b>t{FAULT}</b>" in html
    result.stdout.fnmatch_lines(["layerwise: * tensors compared in 2 model executions", f"plot: {written}"])


def test_passing_items_are_not_bisected(pytester):
    save(bm.chain_model(6), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", *ONLY_ACCURACY, "--bisect", "--bisect-plot", "plots")
    result.assert_outcomes(passed=1)
    assert "onnx2trt_check bisect" not in result.stdout.str() and not list((pytester.path).glob("plots/*"))


def test_optimized_only_difference_is_named(pytester, monkeypatch):
    """The artifact is the model itself, only the optimized run is off: no tensor diverges."""
    save(bm.chain_model(6), pytester.path / "m.onnx")
    original = OrtTarget.run
    monkeypatch.setattr(OrtTarget, "run", lambda self, path, feeds: [{k: v * 1.01 for k, v in o.items()} for o in original(self, path, feeds)])
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", *ONLY_ACCURACY, "--bisect")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["no tensor beyond tolerance", "*comes from ONNX Runtime's optimized execution*"])


def test_bad_options_are_usage_errors(pytester):
    save(bm.chain_model(4), pytester.path / "m.onnx")
    (pytester.path / "file.txt").write_text("x")
    for args, message in ((["--bisect-feeds", "0"], "*--bisect-feeds 0 must be at least 1*"), (["--bisect-plot", "file.txt"], "*'file.txt' is a file; pass a folder*")):
        result = pytester.runpytest_inprocess("--model", "m.onnx", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([message])


def test_accuracy_target_reads_only_target_accuracy_items():
    from onnx2trt_check.pytest_plugin.core import Check

    class Item:
        def __init__(self, family, name):
            self.check = Check(family, name, run=None)

    assert accuracy_target(Item("target[ort-int8]", "accuracy")) == "ort-int8"
    assert accuracy_target(Item("target[ort]", "latency")) is None
    assert accuracy_target(Item("calibration[max]", "accuracy")) is None
    assert accuracy_target(object()) is None


def test_unique_path_claims_the_next_free_suffix(tmp_path):
    first, second = unique_path(tmp_path / "d", "m.t", ".html"), unique_path(tmp_path / "d", "m.t", ".html")
    assert (first.name, second.name) == ("m.t.html", "m.t.1.html") and first.exists() and second.exists()


def test_finding_line_for_trt_and_errors():
    assert finding_line({"skipped": "layerwise comparison of TensorRT engines needs TensorRT; ..."}).startswith("layerwise comparison of TensorRT engines needs TensorRT")
    assert "optimized run" in finding_line({"first_divergent": None})


def test_a_failed_tensorrt_item_is_bisected_on_the_engine_with_every_tensor_marked(pytester, monkeypatch):
    """A stand-in for a machine with TensorRT: the "engine" is ONNX Runtime on a copy with one
    node's weights wrong, giving every tensor through run_exposed as a mark-all engine does."""
    from onnx2trt_check.targets.tensorrt import TensorRtTarget

    fault = bm.weighted_nodes(6)[1]
    reference, faulty = bm.wrong_weights(6, fault)
    save(reference, pytester.path / "m.onnx")
    save(faulty, pytester.path / "engine.onnx")
    engine = str(pytester.path / "engine.onnx")

    def run_exposed(self, path, feeds):
        model = onnx.load(engine)
        names = [o for n in model.graph.node for o in n.output]
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names if n not in {o.name for o in model.graph.output})
        return run_model(model, feeds)

    monkeypatch.setattr(TensorRtTarget, "unavailable_reason", lambda self: None)
    monkeypatch.setattr(TensorRtTarget, "artifact", lambda self, ctx: ctx.path)
    monkeypatch.setattr(TensorRtTarget, "run", lambda self, path, feeds: OrtTarget().run(engine, feeds))
    monkeypatch.setattr(TensorRtTarget, "run_exposed", run_exposed)
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "trt-fp32", *ONLY_ACCURACY, "--bisect", "--report-json", "r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*onnx2trt_check bisect: trt-fp32*"])
    accuracy = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["target[trt-fp32]"]["checks"]["accuracy"]
    assert accuracy["figures"]["bisect"]["first_divergent_nodes"] == [bm.node_name(fault)]


def test_a_qdq_model_is_compared_with_its_float_counterpart(pytester):
    save(bm.qdq_model(8, bad=FAULT), pytester.path / "q.onnx")
    result = pytester.runpytest_inprocess("--model", "q.onnx", "--target", "ort-int8", *ONLY_ACCURACY, "--bisect")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "ort-int8: artifact vs the model's float counterpart (Q/DQ removed, weights dequantized)*",
        f"first divergent: node {bm.node_name(FAULT)}, tensor 't{FAULT - 1}_dq{FAULT}' (reference 't{FAULT - 1}'):*",
    ])
