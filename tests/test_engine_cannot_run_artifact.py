"""ONNX Runtime's own failure on an artifact the tool made: its graph optimizer threw "Attempt to
replace the existing tensor" on the int8 and fp16 artifacts of an ORT-transformers fused BERT (while
the same graphs ran with optimizations off). `quantize` and `bisect` ended in a Python traceback;
now `quantize` writes nothing unless --accept-degraded (the model cannot be verified) and `bisect`
fails the verdict naming ORT's error, then compares layer by layer with optimizations off. The
failure is planted here: no small graph triggers that ORT bug."""

from pathlib import Path

import pytest

from onnx2trt_check import runtime
from onnx2trt_check.cli.main import main

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL = str(MODELS / "convbn_classifier.onnx")
CALIB = str(MODELS / "convbn_classifier.calib.npz")
ORT_ERROR = "[ONNXRuntimeError] : 1 : FAIL : Exception during initialization: Attempt to replace the existing tensor"


@pytest.fixture
def optimizer_fails(monkeypatch):
    """ONNX Runtime failing to create an optimized session, as its graph optimizer did."""
    create = runtime.create_session

    def failing(model, *, optimized=False, **kwargs):
        if optimized:
            raise RuntimeError(ORT_ERROR)
        return create(model, optimized=optimized, **kwargs)

    monkeypatch.setattr(runtime, "create_session", failing)


def test_quantize_writes_nothing_it_cannot_verify(tmp_path, capsys, optimizer_fails):
    assert main(["quantize", MODEL, "-o", str(tmp_path / "q.onnx"), "--calibration-data", CALIB, "--method", "max"]) == 1
    captured = capsys.readouterr()
    assert f"ONNX Runtime cannot run the int8 model (RuntimeError: {ORT_ERROR}), so it cannot be verified" in captured.out
    assert "pass --accept-degraded to write it unverified" in captured.out and "Traceback" not in captured.err
    assert not (tmp_path / "q.onnx").exists()


def test_accept_degraded_writes_it_saying_unverified(tmp_path, capsys, optimizer_fails):
    args = ["quantize", MODEL, "-o", str(tmp_path / "q.onnx"), "--calibration-data", CALIB, "--method", "max", "--accept-degraded"]
    assert main(args) == 0
    assert f"WARNING: wrote '{tmp_path / 'q.onnx'}' unverified (--accept-degraded)" in capsys.readouterr().out
    assert (tmp_path / "q.onnx").exists()


def test_bisect_fails_the_verdict_naming_the_engine_error_and_still_compares_layer_by_layer(tmp_path, capsys, optimizer_fails):
    assert main(["bisect", MODEL, "--target", "ort-fp16", "--json", str(tmp_path / "b.json")]) == 1
    captured = capsys.readouterr()
    assert f"ort-fp16 (onnxruntime) on 4 feed(s): ort-fp16 cannot run its artifact (RuntimeError: {ORT_ERROR})" in captured.out
    assert "ONNX Runtime with graph optimizations off" in captured.out and "Traceback" not in captured.err
