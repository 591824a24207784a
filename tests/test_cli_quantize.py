"""`onnx2trt-check quantize`: writes a QDQ model atomically, prints the report and the accuracy."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx2trt_check.cli.main import main
from onnx2trt_check.quant.float_counterpart import has_qdq

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL = str(MODELS / "convbn_classifier.onnx")
CALIB = str(MODELS / "convbn_classifier.calib.npz")


def quantize(tmp_path, *args):
    return main(["quantize", MODEL, "-o", str(tmp_path / "q.onnx"), "--calibration-data", CALIB, "--method", "max", *args])


def test_writes_a_valid_qdq_model_and_prints_report_and_accuracy(tmp_path, capsys):
    assert quantize(tmp_path, "--inputs", str(MODELS / "convbn_classifier.npz")) == 0
    out = capsys.readouterr().out
    written = onnx.load(str(tmp_path / "q.onnx"))
    onnx.checker.check_model(written, full_check=True)
    assert has_qdq(written)
    # 4 Conv + 1 Gemm in the model (models/manifest.json)
    assert "quantized 5 activation(s) (max) and 5 weight(s)" in out
    assert "on 360 feed(s) of test inputs" in out and "logits: SQNR" in out and "top-1 agreement" in out
    assert not list(tmp_path.glob(".q.onnx.*"))  # no temporary file left behind


def test_without_test_inputs_it_measures_on_held_out_calibration_feeds(tmp_path, capsys):
    assert quantize(tmp_path, "--per-tensor", "--exclude", ".*Gemm") == 0
    out = capsys.readouterr().out
    # 128 calibration feeds: every 5th (25) judges, the other 103 calibrate
    assert "calibrated on 103 feed(s)" in out
    assert "int8 vs fp32 on 25 feed(s) of 25 held-out feed(s) of the calibration data" in out and "the quantizer calibrated on the other 103" in out
    assert "skipped /6/6.2/Gemm: excluded by '.*Gemm'" in out
    assert "4 weight(s)" in out and "per tensor" in out


def test_never_overwrites_without_force(tmp_path, capsys):
    (tmp_path / "q.onnx").write_bytes(b"keep")
    assert quantize(tmp_path) == 4
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "q.onnx").read_bytes() == b"keep"
    assert quantize(tmp_path, "--force") == 0
    assert has_qdq(onnx.load(str(tmp_path / "q.onnx")))


@pytest.mark.parametrize(
    "change, message",
    [
        ("wrong_key", "is not an input of the model"),
        ("missing", "does not exist"),
        ("percentile", "outside (0, 100]"),
        ("qdq_input", "already holds Q/DQ nodes"),
    ],
)
def test_misuse_is_exit_4_with_one_line(tmp_path, capsys, change, message):
    model, calib, extra = MODEL, CALIB, []
    if change == "wrong_key":
        calib = str(tmp_path / "bad.npz")
        np.savez(calib, images=np.zeros((2, 1, 1, 16, 16), np.float32))
    elif change == "missing":
        calib = str(tmp_path / "nowhere.npz")
    elif change == "percentile":
        extra = ["--percentile", "0"]
    else:
        model = str(tmp_path / "qdq.onnx")
        assert quantize(tmp_path) == 0
        shutil.copy(tmp_path / "q.onnx", model)
        capsys.readouterr()
    code = main(["quantize", model, "-o", str(tmp_path / "out.onnx"), "--calibration-data", calib, *extra])
    err = capsys.readouterr().err
    assert code == 4 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()
