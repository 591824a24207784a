"""hunt19: without --max-metric-drop a task item passed any drop without a word: a distilled
student that learned nothing read 'task[model] PASSED top1 0 (reference 1, drop 1)'. The item
still passes (the figures are reported), and its summary now says it cannot fail."""

import json

import numpy as np
import onnx.parser

CLASSIFIER = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1, 3] x) => (float[1, 3] logits) {{
  w = Constant <value = float[3, 3] {{{weights}}}> ()
  logits = MatMul(x, w)
}}"""
IDENTITY, REVERSED = "1, 0, 0, 0, 1, 0, 0, 0, 1", "0, 0, 1, 0, 1, 0, 1, 0, 0"


def _run(pytester, *extra):
    onnx.save(onnx.parser.parse_model(CLASSIFIER.format(weights=IDENTITY)), str(pytester.path / "teacher.onnx"))
    onnx.save(onnx.parser.parse_model(CLASSIFIER.format(weights=REVERSED)), str(pytester.path / "student.onnx"))
    x = np.array([[[3, 1, 0]], [[0, 1, 3]], [[3, 0, 1]], [[1, 0, 3]]], np.float32)
    np.savez(pytester.path / "data.npz", x=x)
    np.save(pytester.path / "labels.npy", np.array([0, 2, 0, 2]))
    result = pytester.runpytest_inprocess("--model", "student.onnx", "--reference-model", "teacher.onnx", "--inputs", "data.npz",
                                          "--labels", "labels.npy", "--target", "ort", "-k", "task", "--report-json", "r.json", *extra)
    families = next(iter(json.loads((pytester.path / "r.json").read_text())["models"].values()))["families"]
    return result, {name: entry for name, entry in families.items() if name.startswith("task")}


def test_a_task_item_without_a_limit_says_it_cannot_fail(pytester):
    result, families = _run(pytester)
    assert families["task[model]"]["verdict"] == "passed"
    summary = families["task[model]"]["checks"]["metric"]["figures"]["summary"]
    assert "top1 0 (reference 1, drop 1)" in summary and "CANNOT FAIL: no --max-metric-drop" in summary, summary
    result.stdout.fnmatch_lines(["*task[[]model[]]*PASSED*CANNOT FAIL: no --max-metric-drop*"])
    assert "CANNOT FAIL" not in families["task[reference]"]["checks"]["metric"]["figures"]["summary"]


def test_a_limit_judges_and_says_nothing_of_it(pytester):
    result, families = _run(pytester, "--max-metric-drop", "0.01")
    assert families["task[model]"]["verdict"] == "failed"
    assert "CANNOT FAIL" not in result.stdout.str()
