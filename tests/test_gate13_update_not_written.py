"""gate13: a `--baseline-update` whose file could not be written at session end exited 1, but the
JSON report said nothing of it (no note; its item's figures "verdict": "updated", "message":
"baseline updated") and the decision table still showed the row UPDATED: a reader of the report
saw a clean update."""

from __future__ import annotations

import json

import scipy.stats  # noqa: F401  (see test_baseline_checks.py: pytester and scipy's C extensions)
from tiny_models import parse, save

from onnx2trt_check import baseline as store
from onnx2trt_check.environment import environment_key

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }
"""


def test_a_baseline_that_could_not_be_written_is_not_reported_updated(pytester):
    save(parse(MODEL), pytester.path / "m.onnx")
    target = store.baseline_path(pytester.path / "bl", model_name="m.onnx", target="ort", environment=environment_key())
    target.mkdir(parents=True)  # a folder where the file goes: the rename into place fails
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "-k", "baseline", "--baseline-dir", "bl",
                                          "--baseline-update", "--report-json", "r.json")
    assert result.ret == 1, result.stdout.str()
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["exit_status"] == 1
    assert any(note.startswith(f"could not write baseline {target}") for note in report["notes"]), report["notes"]
    accuracy = report["models"]["m.onnx"]["families"]["baseline[ort]"]["checks"]["accuracy"]
    assert accuracy["figures"]["verdict"] == "not written", accuracy["figures"]
    assert "baseline updated" not in json.dumps(report)
    text = result.stdout.str()
    assert "UPDATED" not in text and "NOT WRITTEN" in text, text
