"""`onnx2trt-check qdq check|optimize`: exit codes, what is printed, atomic writes, refused overwrites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from qdq_strategies import RulesSpec, input_feeds, rules_graph

from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import USAGE_ERROR_EXIT_CODE
from onnx2trt_check.quant.qdq_rules import validate_qdq
from onnx2trt_check.runtime import run_model

MODELS = Path(__file__).resolve().parents[1] / "models"


def planted(tmp_path: Path, violation: str | None, name: str = "in.onnx") -> Path:
    path = tmp_path / name
    onnx.save(rules_graph(RulesSpec(3, (0.02, 0.03, 0.05, 0.1), 0, violation, 0.0)), path)
    return path


def test_check_exits_1_on_an_error_and_prints_nodes_and_fix(tmp_path, capsys):
    assert main(["qdq", "check", str(planted(tmp_path, "int32_bias"))]) == 1
    out = capsys.readouterr().out
    assert "ERROR   QDQ004-int32-bias at b1_dq, conv1: int32 DequantizeLinear" in out
    assert "fix: keep the bias in float" in out and "1 error(s)" in out


def test_check_exits_0_with_warnings_only(tmp_path, capsys):
    assert main(["qdq", "check", str(planted(tmp_path, "concat_scales"))]) == 0
    assert "WARNING QDQ008-concat-scales at concat" in capsys.readouterr().out


def test_check_of_a_float_model_says_there_is_nothing_to_check(capsys):
    assert main(["qdq", "check", str(MODELS / "convbn_classifier.onnx")]) == 0
    assert "holds no Q/DQ nodes" in capsys.readouterr().out


def test_check_of_a_missing_file_is_a_usage_error(tmp_path):
    assert main(["qdq", "check", str(tmp_path / "nope.onnx")]) == USAGE_ERROR_EXIT_CODE


def test_optimize_writes_a_verified_model_and_prints_rewrites_and_findings(tmp_path, capsys):
    source, output = planted(tmp_path, "conv_add_qdq"), tmp_path / "out.onnx"
    feeds = input_feeds(onnx.load(source), 0, 1.0, count=3)
    np.savez(tmp_path / "x.npz", x=np.stack([f["x"] for f in feeds]))
    before = source.read_bytes()
    assert main(["qdq", "optimize", str(source), "-o", str(output), "--inputs", str(tmp_path / "x.npz")]) == 0
    out = capsys.readouterr().out
    assert "verified on 3 feed(s) (npz:" in out
    assert "move_qdq_to_residual: 1 site(s), max abs change" in out and "<= bound" in out
    assert "WARNING QDQ006-conv-add-qdq" in out.split("findings after")[0]
    assert "findings after optimizing:\nQ/DQ placement: no problems found" in out
    written = onnx.load(output)
    onnx.checker.check_model(written)
    assert validate_qdq(written) == [] and source.read_bytes() == before
    assert not list(tmp_path.glob(".out.onnx.*"))  # no temporary file left behind
    # the written model computes the same function up to int8 noise
    for a, b in zip(run_model(source, feeds), run_model(written, feeds)):
        assert np.abs(a["y"] - b["y"]).max() < 0.5 * np.abs(a["y"]).max()


def test_optimize_refuses_to_overwrite_without_force(tmp_path, capsys):
    source, output = planted(tmp_path, "conv_add_qdq"), tmp_path / "out.onnx"
    output.write_bytes(b"mine")
    assert main(["qdq", "optimize", str(source), "-o", str(output)]) == USAGE_ERROR_EXIT_CODE
    assert output.read_bytes() == b"mine" and "--force" in capsys.readouterr().err
    assert main(["qdq", "optimize", str(source), "-o", str(output), "--force"]) == 0
    assert validate_qdq(onnx.load(output)) == []


def test_optimize_refuses_the_input_as_output_and_a_float_model(tmp_path, capsys):
    source = planted(tmp_path, None)
    assert main(["qdq", "optimize", str(source), "-o", str(source), "--force"]) == USAGE_ERROR_EXIT_CODE
    assert main(["qdq", "optimize", str(MODELS / "convbn_classifier.onnx"), "-o", str(tmp_path / "o.onnx")]) == USAGE_ERROR_EXIT_CODE
    assert "holds no Q/DQ nodes" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()


def test_optimize_of_a_clean_model_writes_an_unchanged_copy(tmp_path, capsys):
    source, output = planted(tmp_path, None), tmp_path / "out.onnx"
    assert main(["qdq", "optimize", str(source), "-o", str(output)]) == 0
    assert "no rewrite applies" in capsys.readouterr().out
    assert onnx.load(output) == onnx.load(source)


def test_optimize_that_leaves_an_error_writes_and_exits_1(tmp_path, capsys):
    """An error rule the optimizer does not rewrite (int32 bias): the file is written (its rewrites
    hold) but a script must not go on to deploy it: exit 1, said on the last line."""
    source, output = planted(tmp_path, "int32_bias"), tmp_path / "out.onnx"
    assert main(["qdq", "optimize", str(source), "-o", str(output)]) == 1
    out = capsys.readouterr().out
    assert output.exists() and out.rstrip().splitlines()[-1].startswith("error: 1 placement error(s) remain that TensorRT rejects")
