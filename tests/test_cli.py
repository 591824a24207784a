"""The `onnx2trt-check` entry point: exit codes and one-line errors."""

import subprocess
import sys

import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main


def test_ops_lists_findings_and_exits_zero_without_errors(tmp_path, capsys):
    path = save(classifier(), tmp_path / "m.onnx")
    assert main(["ops", str(path)]) == 0
    assert "according to TensorRT" in capsys.readouterr().out  # the parser (TensorRT-RTX in the test extra) or the table


@pytest.mark.parametrize("argv", [["ops", "missing.onnx"], ["ops", "m.onnx", "--bogus"]])
def test_misuse_is_exit_4_with_one_line(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    save(classifier(), tmp_path / "m.onnx")
    assert main(argv) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnx2trt-check: error: ")


def test_unknown_command_is_exit_4_without_traceback():
    result = subprocess.run([sys.executable, "-m", "onnx2trt_check.cli", "bogus"], capture_output=True, text=True)
    assert result.returncode == 4 and "Traceback" not in result.stderr and "invalid choice" in result.stderr
