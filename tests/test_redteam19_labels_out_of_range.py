"""Red team 19: --labels outside the model's classes (100 on a 10-class output: another dataset's
ids, 1-based labels, a -1 'ignore' mark) can never be any model's top-1: the reference read top1 0,
every target 'top1 0 (reference 0, drop 0)', and task items passed whatever the target gave, with a
CANNOT FAIL that blamed --max-metric-drop; quantize wrote its model. They now fail naming the labels
and the class range (the task items; a usage error in quantize)."""

import numpy as np
import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import InputDataError
from onnx2trt_check.task_metrics import classification_figures


@pytest.mark.parametrize("labels", [[100] * 4, [3, 10, 2, 1], [0, -1, 2, 3]])
def test_labels_outside_the_classes_are_refused(labels):
    scores = np.random.default_rng(0).random((4, 10), dtype=np.float32)
    with pytest.raises(InputDataError, match=r"--labels holds \d of 4 label\(s\) outside 0..9, the classes of output 'logits'"):
        classification_figures({"logits": scores}, np.array(labels))


def test_labels_inside_the_classes_are_scored():
    scores = np.eye(10, dtype=np.float32)[:4]
    assert classification_figures({"logits": scores}, np.array([0, 1, 2, 9]))["top1"] == 0.75


def test_pytest_task_items_fail_and_quantize_writes_nothing(pytester, tmp_path, monkeypatch, capsys):
    save(classifier(batch=1), pytester.path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(pytester.path / "x.npz", x=rng.random((8, 1, 3, 8, 8), dtype=np.float32))
    np.savez(pytester.path / "c.npz", x=rng.random((16, 1, 3, 8, 8), dtype=np.float32))
    np.save(pytester.path / "l.npy", np.full(8, 100))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--inputs", "x.npz", "--labels", "l.npy",
                                          "--target", "ort", "--max-metric-drop", "0", "-k", "task")
    result.assert_outcomes(failed=2, deselected=20)
    monkeypatch.chdir(pytester.path)
    assert main(["quantize", "m.onnx", "-o", "q.onnx", "--calibration-data", "c.npz", "--inputs", "x.npz", "--labels", "l.npy"]) == 4
    assert "outside 0..9" in capsys.readouterr().err and not (pytester.path / "q.onnx").exists()
