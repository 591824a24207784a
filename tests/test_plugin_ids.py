"""Item ids of `pytest --model` name their model, wherever it lies: xdist runs every item, --lf
re-runs exactly the failed ones, an id selects its item, symlinked models are collected, and a
user's project with its own conftest.py runs models outside it (issue 13, points 2, 4, 10, 12)."""

import json
import os

import numpy as np
import onnx
import pytest
from tiny_models import classifier, save

from onnx2trt_check.targets.ort import OrtTarget

LIGHT = ("--target", "ort", "-k", "structure or reference or target")
PER_MODEL = 8  # 6 structure (trt_parse among them), 1 reference, 1 target[ort]


@pytest.fixture
def foreign(pytester, monkeypatch):
    """A user's project with its own conftest.py as the working folder, and two models of one file
    name outside it (models/a/model.onnx, models/b/model.onnx)."""
    project = pytester.mkdir("project")
    (project / "conftest.py").write_text("import pytest\n\n\n@pytest.fixture\ndef anything():\n    return 1\n")
    for folder, seed in (("a", 0), ("b", 1)):
        (pytester.path / "models" / folder).mkdir(parents=True)
        save(classifier(seed=seed), pytester.path / "models" / folder / "model.onnx")
    monkeypatch.chdir(project)
    return pytester.path / "models"


MODELS = ("--model=../models/a/model.onnx", "--model=../models/b/model.onnx")


def _ids(result) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_a_project_with_a_conftest_runs_models_outside_it(pytester, foreign):
    result = pytester.runpytest_inprocess(*MODELS, *LIGHT)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2 * PER_MODEL)


def test_ids_of_models_outside_the_rootdir_name_the_model_and_are_unique(pytester, foreign):
    ids = _ids(pytester.runpytest_inprocess(*MODELS, *LIGHT, "--collect-only", "-q"))
    assert len(ids) == len(set(ids)) == 2 * PER_MODEL
    a, b = (str(foreign / folder / "model.onnx") for folder in ("a", "b"))
    assert f"{a}::structure::checker" in ids and f"{b}::target::accuracy[ort]" in ids


def test_ids_inside_the_rootdir_are_relative_to_it(pytester, foreign):
    os.chdir(pytester.path)
    ids = _ids(pytester.runpytest_inprocess("--model=models/a/model.onnx", "--model=models/b/model.onnx", *LIGHT, "--collect-only", "-q"))
    assert "models/a/model.onnx::structure::checker" in ids and "models/b/model.onnx::structure::checker" in ids


def test_a_failed_line_names_the_model_and_selects_the_item_again(pytester, foreign, noisy_ort):
    result = pytester.runpytest_inprocess(*MODELS, *LIGHT, "-rf")
    result.assert_outcomes(passed=2 * (PER_MODEL - 1), failed=2)
    result.stdout.fnmatch_lines([f"FAILED {foreign / 'a' / 'model.onnx'}::target::accuracy[[]ort[]]*"])
    shown = next(line.split(" ")[1] for line in result.outlines if line.startswith("FAILED") and "/a/" in line)
    assert shown.endswith("/a/model.onnx::target::accuracy[ort]")  # as collected: no "]" added by pytest
    again = pytester.runpytest_inprocess(*MODELS, *LIGHT, shown, "--collect-only", "-q")  # pasted back as pytest 9 prints it
    selected = _ids(again)  # the argument is a path pytest roots at: ids are relative to it now
    assert len(selected) == 1 and selected[0].endswith("models/a/model.onnx::target::accuracy[ort]")


@pytest.mark.parametrize("dist", ["loadfile", pytest.param("load", marks=pytest.mark.slow)])
def test_xdist_runs_every_item_of_every_model(pytester, foreign, dist):
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(*MODELS, *LIGHT, "-n", "2", "--dist", dist, f"--report-json={report}")
    result.assert_outcomes(passed=2 * PER_MODEL)
    models = json.loads(report.read_text())["models"]
    assert sorted(models) == [str(foreign / "a" / "model.onnx"), str(foreign / "b" / "model.onnx")]
    assert all(len(m["families"]["structure"]["checks"]) == 6 for m in models.values())


@pytest.fixture
def noisy_ort(monkeypatch):
    """The `ort` target's outputs off by about 1e-3: its accuracy items fail."""
    original = OrtTarget.run

    def run(self, model_path, feeds):
        return [{k: v + np.float32(1e-3) for k, v in o.items()} for o in original(self, model_path, feeds)]

    monkeypatch.setattr(OrtTarget, "run", run)


def test_last_failed_reruns_exactly_the_failed_items(pytester, foreign, noisy_ort):
    pytester.runpytest_inprocess(*MODELS, *LIGHT).assert_outcomes(passed=2 * (PER_MODEL - 1), failed=2)
    again = pytester.runpytest_inprocess(*MODELS, *LIGHT, "--lf", "-v")
    again.assert_outcomes(failed=2)
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures*"])
    assert {line.split(" ")[0] for line in again.outlines if " FAILED" in line and "::" in line} == {
        f"{foreign / folder / 'model.onnx'}::target::accuracy[ort]" for folder in ("a", "b")}


def test_an_id_with_brackets_selects_its_item(pytester):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "m.onnx::target::accuracy[ort]", "m.onnx::structure::checker", "--collect-only", "-q")
    assert _ids(result) == ["m.onnx::structure::checker", "m.onnx::target::accuracy[ort]"]
    stems = _ids(pytester.runpytest_inprocess("--model", "m.onnx", "m.onnx::target", "--collect-only", "-q"))
    assert stems and all("::target::" in i for i in stems)
    checks = _ids(pytester.runpytest_inprocess("--model", "m.onnx", "m.onnx::target::accuracy", "--collect-only", "-q"))
    assert checks == stems
    family = _ids(pytester.runpytest_inprocess("--model", "m.onnx", "m.onnx::target[ort-fp16]", "--collect-only", "-q"))
    assert family == ["m.onnx::target::accuracy[ort-fp16]"]


@pytest.mark.parametrize("old", ["m.onnx::target[ort]::accuracy", "m.onnx::target[ort]::accuracy]"])
def test_ids_of_earlier_versions_still_select_their_item(pytester, old):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", old, "--collect-only", "-q")
    assert _ids(result) == ["m.onnx::target::accuracy[ort]"]


@pytest.fixture
def linked(pytester):
    """A folder holding one model file, one symlink to a model kept elsewhere, and one symlinked
    model with external data whose data file is symlinked too (as `ln -s store/* zoo/` makes)."""
    (pytester.path / "zoo").mkdir()
    (pytester.path / "store").mkdir()
    save(classifier(), pytester.path / "zoo" / "real.onnx")
    save(classifier(seed=1), pytester.path / "store" / "kept.onnx")
    onnx.save(classifier(seed=2), str(pytester.path / "store" / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    for name in ("kept.onnx", "ext.onnx", "ext.data"):
        (pytester.path / "zoo" / name.replace("kept", "linked")).symlink_to(pytester.path / "store" / name)
    return pytester.path / "zoo"


def test_symlinked_models_in_a_folder_are_collected(pytester, linked):
    ids = _ids(pytester.runpytest_inprocess("--model", "zoo", *LIGHT, "--collect-only", "-q"))
    assert len(ids) == 3 * PER_MODEL and [i.split("::")[0] for i in ids[::PER_MODEL]] == ["zoo/ext.onnx", "zoo/linked.onnx", "zoo/real.onnx"]


@pytest.mark.slow
def test_symlinked_models_run_under_xdist(pytester, linked):
    pytester.runpytest_subprocess("--model", "zoo", *LIGHT, "-n", "2").assert_outcomes(passed=3 * PER_MODEL)


def test_external_data_that_onnx_refuses_to_read_is_a_usage_error(pytester, linked):
    """onnx reads no external data through a symlink next to the real model file."""
    (pytester.path / "store" / "ext.data").rename(pytester.path / "ext.data")
    (pytester.path / "store" / "ext.data").symlink_to(pytester.path / "ext.data")
    result = pytester.runpytest_inprocess("--model", "zoo/ext.onnx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["ERROR: initializer 'w' of '*ext.onnx' keeps its data in 'ext.data', a symbolic link, which onnx refuses to read; copy the data file itself beside the model"])


def test_every_hook_object_of_a_run_is_hashable(pytester):
    """pluggy keeps plugin objects in sets (a conftest.py makes it compute subsets of them)."""
    save(classifier(), pytester.path / "m.onnx")
    config = pytester.parseconfigure("--model", "m.onnx", "--latency", "--bisect", "--calibration-sweep", "--calibration-data", _calibration(pytester))
    objects = [plugin for name, plugin in config.pluginmanager.list_name_plugin() if name and name.startswith("onnx2trt_check")]
    assert len(objects) >= 6 and all(hash(o) == object.__hash__(o) for o in objects)


def _calibration(pytester) -> str:
    np.savez(pytester.path / "calib.npz", x=np.random.default_rng(0).random((4, 1, 3, 8, 8), dtype=np.float32))
    return str(pytester.path / "calib.npz")
