"""gate13: `baseline::coverage` passed saying "N baseline file(s) of N target(s), each target checked
by this run" while one of those targets was a TensorRT one this run did not check (TensorRT-RTX
installed, no GPU: the trt-* targets are not selected and their files are exempt). The exemption
stays; the claim names what was not compared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_models import copy_sample

from onnx2trt_check.targets.trt import trt_unavailable_reason

pytestmark = pytest.mark.skipif(trt_unavailable_reason() is None, reason="the trt-* targets run here: their files are compared")
SAMPLE = "convbn_classifier"


@pytest.fixture
def project(pytester):
    copy_sample(pytester.path, SAMPLE)
    (pytester.path / "baselines").mkdir()
    return pytester


def _gate(pytester, *extra):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", f"{SAMPLE}.onnx", "--inputs", f"{SAMPLE}.npz",
                                         "--baseline-dir", "baselines", "-k", "baseline", *extra)


def _trt_file_from_another_machine(folder: Path) -> Path:
    """The ort baseline as a trt-fp16 file of a GPU machine (the name is all coverage reads)."""
    ort = next(folder.glob(f"{SAMPLE}.ort.*.json"))
    trt = folder / f"{SAMPLE}.trt-fp16+tensorrt-10.0123456789ab.json"
    shutil.copy(ort, trt)
    return trt


def _coverage(report: Path) -> dict:
    document = json.loads(report.read_text())
    return document["models"][f"{SAMPLE}.onnx"]["families"]["baseline"]["checks"]["coverage"]


def test_a_trt_file_this_run_did_not_compare_is_not_claimed_checked(project):
    recorded = _gate(project, "--baseline-update")
    assert recorded.ret == 0, recorded.stdout.str()
    _trt_file_from_another_machine(project.path / "baselines")
    result = _gate(project, "--report-json", "r.json")
    assert result.ret == 0, result.stdout.str()
    coverage = _coverage(project.path / "r.json")
    assert coverage["outcome"] == "passed"
    assert "trt-fp16" not in coverage["figures"]["targets"]
    assert "trt-fp16" in coverage["figures"]["not_compared"]
    assert "not compared here: trt-fp16" in coverage["figures"]["summary"]
    result.stdout.fnmatch_lines(["*baseline  *PASSED*of 3 target(s), each target checked by this run; not compared here: trt-fp16 (*"])


def test_only_trt_files_skip_rather_than_pass(project):
    recorded = _gate(project, "--baseline-update")
    assert recorded.ret == 0, recorded.stdout.str()
    folder = project.path / "baselines"
    _trt_file_from_another_machine(folder)
    for path in folder.glob(f"{SAMPLE}.*.json"):
        if "+tensorrt" not in path.name:
            path.unlink()
    _gate(project, "--report-json", "r.json", "-k", "coverage")
    coverage = _coverage(project.path / "r.json")
    assert coverage["outcome"] == "skipped", coverage
    assert "trt-fp16" in coverage["message"], coverage
