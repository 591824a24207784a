"""review9: baseline::coverage passed a float model whose ort-int8 files were not compared. ort-int8
is selected for the whole run when any model holds Q/DQ nodes; without --calibration-data it skips
every float model, so a folder gate with one QDQ model that lost --calibration-data stayed green."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import onnx.parser

MODELS = Path(__file__).resolve().parent.parent / "models"
SAMPLE = "convbn_classifier"
QDQ = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (float[1,4] y) <float s = {0.05}, int8 zp = {0}, float[4,4] w = {1,0,0,0,0,1,0,0,0,0,1,0,0,0,0,1}> {
  q = QuantizeLinear(x, s, zp)
  d = DequantizeLinear(q, s, zp)
  y = MatMul(d, w)
}"""


def test_a_float_models_int8_files_are_lost_beside_a_qdq_model(pytester):
    models = pytester.path / "models"
    models.mkdir()
    for suffix in (".onnx", ".calib.npz"):
        shutil.copy(MODELS / f"{SAMPLE}{suffix}", models / f"{SAMPLE}{suffix}")
    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", f"models/{SAMPLE}.onnx", "--baseline-dir", "baselines",
                                             "--calibration-data", f"models/{SAMPLE}.calib.npz", "--baseline-update", "-k", "int8")
    assert recorded.ret == 0, recorded.stdout.str()
    onnx.save(onnx.parser.parse_model(QDQ), models / "qdq.onnx")
    gate = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "models", "--baseline-dir", "baselines", "-k", "coverage")
    gate.assert_outcomes(failed=1, skipped=1)  # qdq.onnx has no baseline file yet: skipped
    gate.stdout.fnmatch_lines(["*ort-int8 (no calibration data*pass --calibration-data*): *convbn_classifier.ort-int8.*.json*"])
