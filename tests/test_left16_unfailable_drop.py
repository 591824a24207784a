"""left16: `--max-metric-drop 1e308` (or any budget at least a figure's whole range: 0.5 against a
top-1 of 0.25, which cannot drop below 0) let every task item pass whatever the target scored, and
nothing said so. As with tolerances that pass an all-zero output (compare.accepts_zero_text), such a
budget is taken (it may be meant for another figure, and the baseline gate keeps its own 0.01), but
the verdict says CANNOT FAIL: in the item's figures and pytest's summary row (`onnx2trt-check check`
prints the same summary). Top-1/top-5 are known to lie in 0..1; a user metric's range is unknown (a
-rmse has no floor), so there only a budget of a million times the figure's size (at least a
million) counts as unbounded."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from onnx2trt_check import task_metrics

CLASSIFIER = """<ir_version: 8, opset_import: ["": 18]>
g (float[N,4] x) => (float[N,4] logits) { logits = Relu(x) }"""


@pytest.fixture()
def folder(tmp_path):
    onnx.save(onnx.parser.parse_model(CLASSIFIER), tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(8, 1, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 3, 0, 1, 2, 3]))  # top-1 of the reference: some right, not all
    (tmp_path / "metric.py").write_text("def metric(outputs, labels):\n    return {'neg_err': -float(abs(outputs['logits']).mean())}\n")
    return tmp_path


def test_a_budget_of_a_whole_accuracy_or_a_huge_one_cannot_fail_a_small_one_can():
    unfailable_text = task_metrics.unfailable_text
    assert "CANNOT FAIL" in unfailable_text({"top1": 0.25}, 0.5, bounded=True)
    assert "CANNOT FAIL" in unfailable_text({"top1": 0.9972, "top5": 1.0}, 1.0, bounded=True)
    assert "CANNOT FAIL" in unfailable_text({"top1": 0.9972}, 1e308, bounded=True)
    assert unfailable_text({"top1": 0.9972}, 0.5, bounded=True) == ""
    assert unfailable_text({"top1": 0.9972}, None, bounded=True) == ""
    assert "CANNOT FAIL" in unfailable_text({"neg_rmse": -0.3}, 1e308, bounded=False)
    assert "CANNOT FAIL" in unfailable_text({"neg_rmse": -3e6}, 1e13, bounded=False)
    assert unfailable_text({"neg_rmse": -0.3}, 0.5, bounded=False) == ""  # a -rmse has no floor: 0.5 gates it
    assert unfailable_text({"neg_rmse": -0.3, "map": 0.4}, 1e308, bounded=False).count("CANNOT FAIL") == 1


@pytest.mark.parametrize(("extra", "vacuous"), [
    (["--labels", "labels.npy", "--max-metric-drop", "1e308"], True),
    (["--labels", "labels.npy", "--max-metric-drop", "1"], True),
    (["--labels", "labels.npy", "--max-metric-drop", "0.01"], False),
    (["--metric", "metric.py", "--max-metric-drop", "1e308"], True),
    (["--metric", "metric.py", "--max-metric-drop", "1"], False),
])
def test_the_summary_row_and_the_figures_say_the_item_cannot_fail(pytester, folder, extra, vacuous):
    (folder / "conftest.py").write_text("# the user's own conftest\n")
    args = [a if not a.endswith((".npy", ".py")) else str(folder / a) for a in extra]
    result = pytester.runpytest_inprocess("--model", str(folder / "m.onnx"), "--inputs", str(folder / "data.npz"), "--target", "ort",
                                          "--report-json", str(folder / "r.json"), *args)
    assert result.ret == 0, result.stdout.str()
    rows = [line for line in result.stdout.lines if line.strip().startswith("task[ort]")]
    assert rows and (("CANNOT FAIL: --max-metric-drop" in rows[0]) is vacuous), result.stdout.str()
    assert ("CANNOT FAIL: --max-metric-drop" in (folder / "r.json").read_text()) is vacuous
    assert "CANNOT FAIL" not in "\n".join(line for line in result.stdout.lines if "task[reference]" in line)


def test_bisect_sensitivity_says_an_unfailable_budget_cannot_fail(folder, monkeypatch, capsys):
    """left16's open finding: `bisect --sensitivity --max-metric-drop 1e308` answered "meets the
    top1 >= -1e+308 floor: nothing to keep in fp32" with no word that nothing could fail."""
    from onnx2trt_check.cli.main import main

    monkeypatch.chdir(folder)
    x = np.load("data.npz")["x"]
    np.save("labels.npy", np.maximum(x, 0).argmax(axis=-1).ravel())  # the float model right on every row: top-1 1.0
    main(["bisect", "m.onnx", "--target", "ort-fp16", "--sensitivity", "--inputs", "data.npz", "--labels", "labels.npy", "--max-metric-drop", "1e308"])
    assert "CANNOT FAIL: --max-metric-drop 1e+308 passes any top1" in capsys.readouterr().out
    main(["bisect", "m.onnx", "--target", "ort-fp16", "--sensitivity", "--inputs", "data.npz", "--labels", "labels.npy", "--max-metric-drop", "0.01"])
    assert "CANNOT FAIL" not in capsys.readouterr().out
