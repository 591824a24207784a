"""`onnx2trt-check optimize`: writes a verified model, never overwrites without --force, exit codes,
printed steps and thresholds."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from test_transform_checks import _broken_fold, _model, bn_then_conv, conv_bn_sigmoid

from onnx2trt_check.cli.main import main
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import registry

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture
def model_path(tmp_path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(conv_bn_sigmoid(), str(path))
    return path


def test_writes_the_verified_model_and_prints_steps_and_thresholds(model_path, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    before = model_path.read_bytes()
    assert main(["optimize", str(model_path), "-o", str(out), "--threshold", "0.3", "--threshold", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert model_path.read_bytes() == before
    assert "fold_conv_bn              ok, 5 -> 4 nodes, 1 rewrite(s); equivalent over 1 output(s)" in printed
    assert "fuse_repconv              no change (no RepVGG/RepConv block" in printed
    assert "output 'y' now carries logits" in printed
    for t in (0.3, 0.9):  # logit(t) computed here, independently of the transform
        assert f"probability > {t}  ->  logit > {math.log(t / (1 - t)):.9g}" in printed
    assert f"wrote '{out}'" in printed
    optimized = onnx.load(str(out))
    onnx.checker.check_model(optimized)
    assert [n.op_type for n in optimized.graph.node] == ["Conv", "Relu", "Conv"]
    feeds = [{"x": np.random.default_rng(5).uniform(0, 1, (1, 3, 6, 6)).astype(np.float32)}]
    probabilities, logits = run_model(conv_bn_sigmoid(), feeds)[0]["y"], run_model(optimized, feeds)[0]["y"]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits.astype(np.float64))), probabilities, atol=1e-5)


def test_refuses_to_overwrite_without_force_and_refuses_the_input_path(model_path, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"mine")
    assert main(["optimize", str(model_path), "-o", str(out)]) == 4
    assert out.read_bytes() == b"mine"
    assert "--force" in capsys.readouterr().err
    assert main(["optimize", str(model_path), "-o", str(out), "--force"]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    original = model_path.read_bytes()
    assert main(["optimize", str(model_path), "-o", str(tmp_path / "." / "m.onnx"), "--force"]) == 4
    assert "is the input model" in capsys.readouterr().err
    assert model_path.read_bytes() == original


@pytest.mark.parametrize("argv", [
    ["--passes", "fold_conv_bn,fold_all"], ["--passes", "fold_conv_bn,,"], ["--threshold", "0"],
    ["--mean", "a,b"], ["--bn-conv-mode", "sloppy"], ["--num-feeds", "0"], ["--inputs", "missing.npz"], ["--bogus"],
])
def test_misuse_is_exit_4_with_one_line_and_nothing_written(model_path, tmp_path, capsys, argv):
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(model_path), "-o", str(out), *argv]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("onnx2trt-check: error: ") or "error:" in err[-1]
    assert not out.exists()


def test_a_failing_step_exits_1_and_writes_nothing(tmp_path, capsys):
    model = tmp_path / "bn.onnx"
    onnx.save(bn_then_conv(pads=1), str(model))
    out = tmp_path / "out.onnx"
    # fold_bn_conv alone: in the full pipeline fuse_input_normalization folds a BN on the input first
    assert main(["optimize", str(model), "-o", str(out), "--bn-conv-mode", "plain", "--passes", "fold_bn_conv"]) == 1
    printed = capsys.readouterr().out
    assert "fold_bn_conv              FAILED, 2 -> 1 nodes" in printed
    assert "output 'y':" in printed and "elements outside |after - before| <= atol" in printed
    assert f"'{out}' NOT written: step 'fold_bn_conv' failed verification" in printed
    assert not out.exists()
    assert main(["optimize", str(model), "-o", str(out), "--passes", "fold_bn_conv"]) == 0  # exact: corrected, written
    assert out.exists()


def test_a_broken_registered_transform_is_named_and_nothing_written(model_path, tmp_path, capsys, monkeypatch):
    entries = tuple(e._replace(function=_broken_fold) if e.name == "fold_conv_bn" else e for e in registry.TRANSFORMS)
    monkeypatch.setattr(registry, "TRANSFORMS", entries)
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(model_path), "-o", str(out)]) == 1
    assert "step 'fold_conv_bn' failed verification" in capsys.readouterr().out
    assert not out.exists()


def test_passes_are_applied_in_the_documented_order_and_only_those(model_path, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(model_path), "-o", str(out), "--passes", "remove_output_sigmoid, fold_conv_bn"]) == 0
    names = set(registry.transform_names())
    steps = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and line.split()[0] in names]
    assert steps == ["fold_conv_bn", "remove_output_sigmoid"]


def test_external_mean_std_make_the_output_read_raw_values(tmp_path, capsys):
    rng = np.random.default_rng(3)
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"w": rng.normal(size=(2, 3, 3, 3))},
                   out_shape=[1, 2, 6, 6])
    source, out = tmp_path / "m.onnx", tmp_path / "raw.onnx"
    onnx.save(model, str(source))
    mean, std = np.array([123.7, 116.3, 103.5]), np.array([58.4, 57.1, 57.4])
    argv = ["optimize", str(source), "-o", str(out), "--mean", "123.7,116.3,103.5", "--std", "58.4,57.1,57.4"]
    assert main(argv) == 0
    assert "on raw inputs (x * std + mean): equivalent" in capsys.readouterr().out
    raw = rng.uniform(0, 255, (1, 3, 6, 6)).astype(np.float32)
    normalized = ((raw - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)).astype(np.float32)
    expected = run_model(model, [{"x": normalized}])[0]["y"]
    np.testing.assert_allclose(run_model(onnx.load(str(out)), [{"x": raw}])[0]["y"], expected, atol=1e-4, rtol=1e-4)


def test_sample_heatmap_with_its_test_data(tmp_path, capsys):
    out = tmp_path / "heatmap.opt.onnx"
    data = tmp_path / "few.npz"
    with np.load(MODELS / "heatmap_sigmoid.npz") as full:
        np.savez(data, input=full["input"][:16])
    shutil.copy(MODELS / "heatmap_sigmoid.onnx", tmp_path / "heatmap.onnx")
    assert main(["optimize", str(tmp_path / "heatmap.onnx"), "-o", str(out), "--inputs", str(data), "--threshold", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "on 16 feed(s) (npz:" in printed
    assert "fuse_input_normalization  ok" in printed and "1 with a border correction" in printed
    assert "probability > 0.5  ->  logit > 0" in printed
    assert "Sigmoid" not in [n.op_type for n in onnx.load(str(out)).graph.node]


BOXES = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 8, 4] x) => (float[1, 8, 3] scores, float[1, 8, 4] pred_boxes) {
        w = Constant <value = float[4, 3] {0.5, -1, 2, 1, 0.3, -0.7, -2, 1.5, 0.1, 0.9, -0.4, 0.2}> ()
        z = MatMul(x, w)
        scores = Sigmoid(z)
        pred_boxes = Sigmoid(x)
    }"""


def test_a_sigmoid_on_box_coordinates_is_kept(tmp_path, capsys):
    """A DETR-style head: the Sigmoid of the box coordinates is no score. Only a declared output
    loses its Sigmoid, and the boxes are written bit-identical."""
    source, out = tmp_path / "detr.onnx", tmp_path / "out.onnx"
    onnx.save(onnx.parser.parse_model(BOXES), str(source))
    assert main(["optimize", str(source), "-o", str(out), "--passes", "remove_output_sigmoid"]) == 0
    printed = capsys.readouterr().out
    assert "no change (output 'scores' ends in a Sigmoid but is not declared a score" in printed
    assert main(["optimize", str(source), "-o", str(out), "--force", "--passes", "remove_output_sigmoid", "--threshold", "0.5"]) == 4
    assert "--threshold without an output name needs a model with one output" in capsys.readouterr().err
    assert main(["optimize", str(source), "-o", str(out), "--force", "--passes", "remove_output_sigmoid", "--threshold", "scores:0.3"]) == 0
    assert "output 'scores' now carries logits" in capsys.readouterr().out
    x = np.random.default_rng(1).normal(scale=3, size=(1, 8, 4)).astype(np.float32)
    before, after = run_model(onnx.load(str(source)), [{"x": x}])[0], run_model(onnx.load(str(out)), [{"x": x}])[0]
    np.testing.assert_array_equal(after["pred_boxes"], before["pred_boxes"])
    np.testing.assert_allclose(1 / (1 + np.exp(-after["scores"].astype(np.float64))), before["scores"], atol=1e-6)
