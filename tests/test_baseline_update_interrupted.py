"""A `--baseline-update` run interrupted during its items writes no baseline: the files of the items
that passed before Ctrl-C were written (red7), a partial update mixing this run's figures with
older ones in one folder, easy to commit unnoticed."""

from __future__ import annotations

from tiny_models import classifier, save

CONFTEST = """
def pytest_runtest_setup(item):
    if item.nodeid.endswith("baseline::accuracy[ort-fp16]"):
        raise KeyboardInterrupt  # after baseline[ort] passed
"""


def test_an_interrupted_update_writes_nothing(pytester, tmp_path):
    model = save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess("--model", str(model), "--target", "ort", "--target", "ort-fp16", "--baseline-dir",
                                           "baselines", "--baseline-update", "-p", "no:cacheprovider")
    assert result.ret == 2, result.stdout.str()
    assert "baselines not updated: the run was interrupted" in result.stdout.str()
    assert not list((pytester.path / "baselines").rglob("*.json"))


def test_an_update_that_ran_through_writes(pytester):
    model = save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_subprocess("--model", str(model), "--target", "ort", "--target", "ort-fp16", "--baseline-dir",
                                           "baselines", "--baseline-update", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    assert len(list((pytester.path / "baselines").rglob("*.json"))) == 2
