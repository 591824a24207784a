"""Red team 5: `-k`, `-m` and `--deselect` made a model vanish without a word. `pytest --model
folder -k mobilenet` checked one model of three; the summary and the JSON report listed that one
alone, and under `-n 2` not even pytest's own line said "deselected" (pytest_plugin/deselected.py)."""

import json

import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadfile"]], ids=["plain", "xdist"])
def test_deselected_models_and_items_are_named_in_the_summary_and_the_report(pytester, xdist):
    folder = pytester.mkdir("models")
    save(classifier(seed=0), folder / "kept.onnx")
    save(classifier(seed=1), folder / "gone.onnx")
    result = pytester.runpytest_subprocess("--model", str(folder), "--target", "ort", "-k", "kept and (structure or reference)",
                                           "--report-json", "r.json", "-p", "no:cacheprovider", *xdist)
    assert result.ret == 0
    notes = json.loads((pytester.path / "r.json").read_text())["notes"]
    gone = [n for n in notes if "gone.onnx" in n]
    assert len(gone) == 1 and "item(s) deselected" in gone[0] and "no item of this model ran, so nothing of it was checked" in gone[0]
    kept = [n for n in notes if "kept.onnx" in n]
    assert len(kept) == 1 and "item(s) deselected" in kept[0] and "no item" not in kept[0]  # its target and transform items
    result.stdout.fnmatch_lines(["note: *gone.onnx: * item(s) deselected (-k, -m, --deselect or item ids), not run; no item of this model ran*"])


def test_a_run_without_deselection_has_no_such_note(pytester):
    save(classifier(), pytester.path / "m.onnx")
    assert pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "--report-json", "r.json").ret == 0
    assert not [n for n in json.loads((pytester.path / "r.json").read_text())["notes"] if "deselected" in n]
