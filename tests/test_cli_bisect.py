"""`onnx2trt-check bisect`: layerwise report and verdict, fallback search, subgraph reduction,
outputs never overwritten, misuse as exit code 4."""

import json

import bisect_models as bm
import numpy as np
import onnx
import pytest

from onnx2trt_check.bisection.sensitivity import fp16_emulation, output_sqnr_db
from onnx2trt_check.cli.main import main
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.ort import OrtTarget

FAULT = 5  # n5_matmul
OVERFLOW = 4  # n4_conv: its output is 1.5x the fp16 maximum


save = bm.save


@pytest.fixture
def inputs(tmp_path):
    path = tmp_path / "in.npz"
    np.savez(path, x=np.stack([feed["x"] for feed in bm.feeds()]))  # 2 feeds on the leading axis
    return str(path)


@pytest.fixture
def faulty_ort(tmp_path, monkeypatch):
    """model.onnx is the chain; the `ort` target deploys a copy whose n5_matmul has wrong weights."""
    reference, target = bm.wrong_weights(10, FAULT)
    faulty = save(target, tmp_path / "faulty.onnx")
    monkeypatch.setattr(OrtTarget, "artifact", lambda self, ctx: faulty)
    return save(reference, tmp_path / "model.onnx")


def test_layerwise_names_the_faulty_node_and_fails(faulty_ort, inputs, tmp_path, capsys):
    plot, report = tmp_path / "plot.html", tmp_path / "out.json"
    assert main(["bisect", faulty_ort, "--target", "ort", "--inputs", inputs, "--plot", str(plot), "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert "ort (onnxruntime) on 2 feed(s): 1 of 1 output(s) beyond tolerance" in out
    assert f"first divergent: node {bm.node_name(FAULT)}, tensor 't{FAULT}' (reference 't{FAULT}'):" in out
    document = json.loads(report.read_text())
    assert document["verdict"] == "failed" and document["layerwise"]["first_divergent"]["nodes"] == [bm.node_name(FAULT)]
    assert document["layerwise"]["executions"] == 4 and "t9" in document["outputs"]
    assert f"first divergent: <b>t{FAULT}</b>" in plot.read_text()
    # outputs are never overwritten without --force, and nothing runs before the refusal
    plot.write_text("mine")
    assert main(["bisect", faulty_ort, "--target", "ort", "--plot", str(plot)]) == 4
    assert plot.read_text() == "mine" and "already exists; pass --force" in capsys.readouterr().err
    assert main(["bisect", faulty_ort, "--target", "ort", "--plot", str(plot), "--force"]) == 1
    assert plot.read_text().startswith("<!DOCTYPE html>")


def test_a_matching_target_passes(tmp_path, capsys):
    model = save(bm.chain_model(6), tmp_path / "m.onnx")
    assert main(["bisect", model, "--target", "ort"]) == 0
    out = capsys.readouterr().out
    assert "within tolerance" in out and "no tensor beyond tolerance" in out and "optimized execution" not in out


def test_qdq_model_on_ort_int8_names_the_badly_scaled_node(tmp_path, inputs, capsys):
    model = save(bm.qdq_model(8, bad=FAULT), tmp_path / "q.onnx")
    assert main(["bisect", model, "--target", "ort-int8", "--inputs", inputs]) == 1
    out = capsys.readouterr().out
    assert "artifact vs the model's float counterpart" in out
    assert f"first divergent: node {bm.node_name(FAULT)}, tensor 't{FAULT - 1}_dq{FAULT}' (reference 't{FAULT - 1}')" in out


def test_sensitivity_finds_the_planted_fp16_overflow(tmp_path, inputs, capsys):
    model = save(bm.fp16_overflow(8, OVERFLOW), tmp_path / "ovf.onnx")
    report = tmp_path / "s.json"
    assert main(["bisect", model, "--target", "ort-fp16", "--sensitivity", "--lowering", "fp16_emulation", "--inputs", inputs, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "fallback search with the fp16_emulation lowering on 2 feed(s)" in out
    pair = [bm.node_name(OVERFLOW), bm.node_name(OVERFLOW + 1)]  # the Conv and the MatMul that reads its output
    assert f"flags: --fp16-block {pair[0]} --fp16-block {pair[1]}\n" in out
    assert "fully lowered -inf dB" in out
    assert f"checked on the fp16 artifact with {', '.join(pair)} blocked" in out and "meets the 30.0 dB floor" in out
    document = json.loads(report.read_text())
    assert document["exclude"] == pair and document["met"] is True and document["lowering"] == "fp16_emulation"
    assert document["verified"]["met"] is True and document["verified"]["blocks"] == pair


def test_sensitivity_of_a_model_in_range_keeps_nothing(tmp_path, capsys):
    model = save(bm.chain_model(6), tmp_path / "m.onnx")
    assert main(["bisect", model, "--target", "ort-fp16", "--sensitivity"]) == 0
    assert "nothing to keep in fp32" in capsys.readouterr().out


def test_reduce_saves_the_overflowing_node_and_refuses_to_overwrite(tmp_path, inputs, capsys):
    model = save(bm.fp16_overflow(8, OVERFLOW), tmp_path / "ovf.onnx")
    bug = tmp_path / "bug"
    assert main(["bisect", model, "--target", "ort-fp16", "--reduce", "-o", str(bug), "--inputs", inputs]) == 0
    assert "1 of 8 node(s) still fail" in capsys.readouterr().out
    reduced = onnx.load(str(bug / "model.onnx"))
    assert [node.name for node in reduced.graph.node] == [bm.node_name(OVERFLOW)]
    with np.load(bug / "inputs.npz") as data:
        feeds = [{"t3": data["t3"][0]}, {"t3": data["t3"][1]}]  # two feeds stacked on a leading axis
    # independently of the search: the saved subgraph overflows when lowered to fp16
    assert output_sqnr_db(run_model(reduced, feeds), run_model(fp16_emulation(reduced), feeds)) == -np.inf
    before = (bug / "model.onnx").read_bytes()
    assert main(["bisect", model, "--target", "ort-fp16", "--reduce", "-o", str(bug), "--inputs", inputs]) == 4
    assert "already exists" in capsys.readouterr().err and (bug / "model.onnx").read_bytes() == before
    assert main(["bisect", model, "--target", "ort-fp16", "--reduce", "-o", str(bug), "--inputs", inputs, "--force"]) == 0


def test_reduce_of_a_model_that_does_not_fail(tmp_path, capsys):
    model = save(bm.chain_model(6), tmp_path / "m.onnx")
    assert main(["bisect", model, "--target", "ort-fp16", "--reduce", "-o", str(tmp_path / "bug")]) == 0
    assert "nothing to reduce" in capsys.readouterr().out and not (tmp_path / "bug").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "trt-fp16"], "layerwise comparison of TensorRT engines needs TensorRT"),
    (["--target", "nope"], "unknown target 'nope'"),
    (["--target", "ort", "-o", "d"], "--reduce needs -o DIR"),
    (["--target", "ort", "--reduce"], "--reduce needs -o DIR"),
    (["--target", "ort", "--sensitivity"], "runs in fp32: nothing to keep in fp32"),
    (["--target", "ort-fp16", "--sensitivity", "--lowering", "int8_quantizer"], "lowers to int8, target 'ort-fp16' runs in fp16"),
    (["--target", "ort-int8", "--sensitivity"], "needs calibration data; pass --calibration-data"),
    (["--target", "ort-int8"], "no calibration data and the model holds no Q/DQ nodes"),
    (["--target", "ort", "--num-feeds", "0"], "must be at least 1"),
    (["--target", "ort", "--bogus"], "unrecognized arguments: --bogus"),
    # options that would change nothing for the target or mode (they were ignored, exit 0)
    (["--target", "ort", "--fp16-no-fallback"], "--fp16-no-fallback would change nothing here (target 'ort' runs in fp32: fp16 options"),
    (["--target", "ort-int8", "--fp16-block", "n0"], "--fp16-block would change nothing here (target 'ort-int8' runs in int8"),
    (["--target", "ort-fp16", "--calibration-data", "c.npz", "--per-tensor"], "--calibration-data, --per-tensor would change nothing here (target 'ort-fp16' runs in fp16: int8 options"),
    (["--target", "cpu-fp16-emu", "--bias-correction"], "--bias-correction would change nothing here"),
    (["--target", "ort-fp16", "--lowering", "fp16_converter"], "--lowering would change nothing here (--lowering lowers for --sensitivity and --reduce)"),
    (["--target", "ort-fp16", "--reduce", "-o", "d", "--rank"], "--rank would change nothing here (--rank ranks for --sensitivity)"),
    # the search's int8 lowering neither equalizes nor corrects biases: the keep set would be found on another model
    (["--target", "ort-int8", "--sensitivity", "--calibration-data", "c.npz", "--cle", "--bias-correction"],
     "--cle, --bias-correction would change nothing here (--sensitivity compares keep sets on the int8_quantizer lowering"),
])
def test_misuse_is_exit_code_4(tmp_path, capsys, args, message):
    model = save(bm.chain_model(4), tmp_path / "m.onnx")
    assert main(["bisect", model, *args]) == 4
    assert message in capsys.readouterr().err


def unnamed(model: onnx.ModelProto) -> onnx.ModelProto:
    """As exporters often leave it: no node has a name."""
    for node in model.graph.node:
        node.name = ""
    return model


def test_fp16_no_fallback_reproduces_the_overflow_of_an_unnamed_node_and_names_it(tmp_path, inputs, capsys):
    model = save(unnamed(bm.fp16_overflow(8, OVERFLOW)), tmp_path / "ovf.onnx")
    label = f"Conv(t{OVERFLOW})"
    # With the data-driven fallback the fp16 artifact keeps the overflowing Conv in fp32: healed.
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs]) == 0
    assert "no tensor beyond tolerance" in capsys.readouterr().out
    # Without it, as TensorRT 10's fp16 flag builds: the overflow shows and is named.
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-no-fallback"]) == 1
    out = capsys.readouterr().out
    assert f"first divergent: node {label}, tensor 't{OVERFLOW}.fp16' (reference 't{OVERFLOW}')" in out and "NaN/Inf" in out
    # The search suggests the Conv and the MatMul that reads its out-of-range output (the converter
    # casts a kept node's output to fp16 for a converted reader), checked on the artifact first.
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-no-fallback", "--sensitivity"]) == 0
    reader = f"MatMul(t{OVERFLOW + 1})"
    out = capsys.readouterr().out
    assert f"flags: --fp16-block '{label}' --fp16-block '{reader}'\n" in out  # quoted for the shell
    assert "(fallback: off (--fp16-no-fallback)" in out and "meets the 30.0 dB floor" in out
    # Printed names are accepted back, and those blocks heal the artifact the target deploys.
    blocks = ["--fp16-block", label, "--fp16-block", reader]
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-no-fallback", *blocks]) == 0
    assert "no tensor beyond tolerance" in capsys.readouterr().out
    # With one of them given, the search keeps it and asks for the other only.
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-no-fallback", "--sensitivity", "--fp16-block", label]) == 0
    out = capsys.readouterr().out
    assert f"keeping {label} as --fp16-block asks" in out and f"flags: --fp16-block '{reader}'\n" in out
    bug = tmp_path / "bug"
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-no-fallback", "--reduce", "-o", str(bug)]) == 0
    assert "1 of 8 node(s) still fail (" in capsys.readouterr().out
    assert [n.op_type for n in onnx.load(str(bug / "model.onnx")).graph.node] == ["Conv"]


def test_a_suggestion_the_artifact_does_not_bear_out_is_not_printed(tmp_path, inputs, capsys, monkeypatch):
    """A lowering that believes the overflow's reader stays fp32 (as the emulation did before it
    rounded a kept node's output for a converted reader) finds the Conv alone; the artifact with
    only the Conv blocked still overflows: no flags, exit 1, the figure of the check."""
    from onnx2trt_check.bisection import sensitivity

    model = save(unnamed(bm.fp16_overflow(8, OVERFLOW)), tmp_path / "ovf.onnx")
    reader = f"MatMul(t{OVERFLOW + 1})"
    monkeypatch.setattr(sensitivity, "fp16_emulation", lambda m, *, keep_fp32=(): fp16_emulation(m, keep_fp32={*keep_fp32, reader}))
    report = tmp_path / "s.json"
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-no-fallback", "--sensitivity", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert f"checked on the fp16 artifact with Conv(t{OVERFLOW}) blocked" in out and "output SQNR -inf dB, MISSES the 30.0 dB floor" in out
    assert "flags:" not in out
    assert json.loads(report.read_text())["verified"] == {"blocks": [f"Conv(t{OVERFLOW})"], "fallback": "off (--fp16-no-fallback): no data-driven fallback, no sensitive-op list",
                                                         "sqnr_db": "-inf", "met": False}


def test_fp16_block_of_an_unknown_label_is_a_usage_error(tmp_path, inputs, capsys):
    model = save(unnamed(bm.fp16_overflow(8, OVERFLOW)), tmp_path / "ovf.onnx")
    assert main(["bisect", model, "--target", "cpu-fp16-emu", "--inputs", inputs, "--fp16-block", "Conv(nope)"]) == 4
    assert "Conv(nope)" in capsys.readouterr().err
