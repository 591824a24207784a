"""zoo16: a folder in which one model cannot be checked (its `{model}` data file is missing) was a
green run under `-k target` (exit 0): pytest's -k deselected that model's `model::load` item, and the
summary only said that nothing of it ran. A refused model's load item now survives every selection
(-k, -m, --deselect; an item id that names another model leaves it out of the run), as the README's "a folder with one bad model is never green" says."""

import json

import numpy as np
import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize("select", [["-k", "target"], ["-k", "kept"], ["-k", "target", "-n", "2", "--dist", "loadfile"]],
                         ids=["k-target", "k-model", "xdist"])
def test_a_refused_model_fails_under_any_selection(pytester, select):
    folder = pytester.mkdir("models")
    save(classifier(seed=0), folder / "kept.onnx")
    save(classifier(seed=1), folder / "nodata.onnx")
    np.savez(folder / "kept.npz", x=np.random.default_rng(0).random((4, 1, 3, 8, 8), np.float32))
    result = pytester.runpytest_subprocess("--model", str(folder), "--inputs", str(folder / "{model}.npz"), "--target", "ort",
                                           "--report-json", "r.json", "-p", "no:cacheprovider", *select)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAILED *nodata.onnx::model::load*"])
    report = json.loads((pytester.path / "r.json").read_text())
    assert not [n for n in report["notes"] if "nodata.onnx" in n and "deselected" in n]  # it ran: no such note
