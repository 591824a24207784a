"""A model that holds Q/DQ nodes is judged by the int8 tolerance profile in every target that runs
its Q/DQ: ORT's optimized run flips values by one quantum where a few ulps of float difference
cross a rounding boundary before a QuantizeLinear (issue 13, point 8, the target part)."""

import json
import shutil
from pathlib import Path

import numpy as np

import onnx2trt_check
from onnx2trt_check.runtime import run_model

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_target_ort_on_a_qdq_model_uses_the_int8_profile(pytester):
    onnx2trt_check.quantize(MODELS / "convbn_classifier.onnx", calibration_data=MODELS / "convbn_classifier.calib.npz",
                            output=pytester.path / "q.onnx")  # entropy: its clipped ranges put values on rounding boundaries
    shutil.copy(MODELS / "convbn_classifier.npz", pytester.path / "q.npz")
    # The premise, measured independently: ORT's optimized run differs from the graph as written
    # by more than the fp32 tolerance (1e-4), by about one quantum of the output's scale.
    with np.load(pytester.path / "q.npz") as data:
        feeds = [{"input": x} for x in data["input"]]
    model = __import__("onnx").load(str(pytester.path / "q.onnx"))
    plain, optimized = run_model(model, feeds, optimized=False), run_model(model, feeds, optimized=True)
    assert max(float(np.abs(a["logits"] - b["logits"]).max()) for a, b in zip(plain, optimized)) > 1e-3

    result = pytester.runpytest_inprocess("--model", "q.onnx", "--inputs", "q.npz", "--target", "ort", "-k", "target", "--report-json", "r.json")
    result.assert_outcomes(passed=1)
    figures = json.loads((pytester.path / "r.json").read_text())["models"]["q.onnx"]["families"]["target[ort]"]["checks"]["accuracy"]["figures"]
    assert figures["tolerance_profile"] == "int8" and figures["outputs"]["logits"]["sqnr_db"] > 40


def test_a_float_model_keeps_its_target_profile(pytester):
    shutil.copy(MODELS / "convbn_classifier.onnx", pytester.path / "m.onnx")
    pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "-k", "target", "--report-json", "r.json").assert_outcomes(passed=1)
    figures = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["target[ort]"]["checks"]["accuracy"]["figures"]
    assert figures["tolerance_profile"] == "fp32"
