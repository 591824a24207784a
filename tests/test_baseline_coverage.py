"""`baseline::coverage`: a gate run that no longer checks a target its baseline folder holds files
of fails, naming the option that selects it (red7: a CI line that lost --calibration-data stayed
green, the ort-int8 files listed only as "unused")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from onnx2trt_check import baseline as store

MODELS = Path(__file__).resolve().parent.parent / "models"
SAMPLE = "convbn_classifier"


@pytest.fixture
def project(pytester):
    """A user's project: the sample model, its data, and an empty baselines/ folder."""
    for suffix in (".onnx", ".npz", ".calib.npz"):
        shutil.copy(MODELS / f"{SAMPLE}{suffix}", pytester.path / f"{SAMPLE}{suffix}")
    (pytester.path / "baselines").mkdir()
    return pytester


def _gate(pytester, *extra):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", f"{SAMPLE}.onnx", "--inputs", f"{SAMPLE}.npz",
                                         "--baseline-dir", "baselines", *extra)


def test_a_gate_that_lost_its_calibration_data_fails(project):
    recorded = _gate(project, "--calibration-data", f"{SAMPLE}.calib.npz", "--baseline-update")
    assert recorded.ret == 0, recorded.stdout.str()
    assert list((project.path / "baselines").glob(f"{SAMPLE}.ort-int8.*.json"))
    full = _gate(project, "--calibration-data", f"{SAMPLE}.calib.npz", "-k", "coverage")
    full.assert_outcomes(passed=1)
    lost = _gate(project, "-k", "coverage")
    lost.assert_outcomes(failed=1)
    lost.stdout.fnmatch_lines(["*ort-int8 (no calibration data*pass --calibration-data*): *ort-int8.*.json*"])


def test_an_explicit_target_list_is_the_users_choice(project):
    _gate(project, "--calibration-data", f"{SAMPLE}.calib.npz", "--baseline-update")
    result = _gate(project, "--target", "ort", "-k", "coverage")
    assert result.ret == 5, result.stdout.str()  # no coverage item: none collected


def test_model_files_match_whole_names(tmp_path):
    environment = {"machine": "m"}
    names = [("models/a.onnx", "ort"), ("models/a.onnx", "ort-fp16"), ("models/a.ort.onnx", "ort"), ("models/a.onnx", "trt-fp16+tensorrt-10")]
    for model, target in names:
        path = store.baseline_path(tmp_path / "baselines", model_name=model, target=target, environment=environment)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({}))
    found = {t: store.model_files(tmp_path / "baselines", model_name="models/a.onnx", target=t) for t in ("ort", "ort-fp16", "trt-fp16")}
    assert [p.name.split(".")[1] for p in found["ort"]] == ["ort"]
    assert [p.name.split(".")[1] for p in found["ort-fp16"]] == ["ort-fp16"]
    assert [p.name.split(".")[1] for p in found["trt-fp16"]] == ["trt-fp16+tensorrt-10"]
    assert store.model_files(tmp_path / "nowhere", model_name="models/a.onnx", target="ort") == []
