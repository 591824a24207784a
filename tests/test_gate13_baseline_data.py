"""gate13: a baseline did not record the input data its figures were measured on. A gate run on
other data (a CI line that lost --inputs, a changed data file or data loader) compared figures of
one data set with another's: with the sample model its fp16 figures "regressed" though only the
data changed (the failure blamed the model), and figures that happen to look better on the new
data passed. Now the baseline keeps a fingerprint of the data (build_options.data) and a run on
other data fails saying so; a baseline written before the fingerprint is compared as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import copy_sample

SAMPLE = "convbn_classifier"


@pytest.fixture
def project(pytester):
    copy_sample(pytester.path, SAMPLE)
    return pytester


def _gate(pytester, *extra):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", f"{SAMPLE}.onnx", "--target", "ort", "--target", "ort-fp16",
                                         "--baseline-dir", "baselines", "-k", "baseline", "--report-json", "r.json", *extra)


def _checks(pytester, family: str) -> dict:
    return json.loads((pytester.path / "r.json").read_text())["models"][f"{SAMPLE}.onnx"]["families"][family]["checks"]


def test_a_gate_on_other_data_fails_naming_it(project):
    recorded = _gate(project, "--inputs", f"{SAMPLE}.npz", "--baseline-update")
    assert recorded.ret == 0, recorded.stdout.str()
    same = _gate(project, "--inputs", f"{SAMPLE}.npz")
    assert same.ret == 0, same.stdout.str()
    lost = _gate(project)  # the CI line lost --inputs: 4 random feeds
    assert lost.ret == 1, lost.stdout.str()
    for target in ("ort", "ort-fp16"):
        accuracy = _checks(project, f"baseline[{target}]")["accuracy"]
        assert accuracy["outcome"] == "failed"
        assert "was measured on other input data (360 feed(s)" in accuracy["message"], accuracy["message"]
        assert "this run: 4 feed(s)" in accuracy["message"]


def test_a_baseline_recorded_before_the_fingerprint_is_compared_as_before(project):
    _gate(project, "--inputs", f"{SAMPLE}.npz", "--baseline-update")
    for path in (project.path / "baselines").glob("*.json"):
        document = json.loads(path.read_text())
        del document["target"]["build_options"]["data"]
        path.write_text(json.dumps(document))
    result = _gate(project, "--inputs", f"{SAMPLE}.npz")
    assert result.ret == 0, result.stdout.str()


def test_the_fingerprint_tells_data_apart():
    from onnx2trt_check.pytest_plugin.baselines import data_fingerprint

    a = [{"x": np.zeros((1, 4), np.float32)}]
    assert data_fingerprint(a) == data_fingerprint([{"x": np.zeros((1, 4), np.float32)}])
    others = [[{"x": np.zeros((1, 4), np.float64)}], [{"x": np.zeros((4, 1), np.float32)}], [{"y": np.zeros((1, 4), np.float32)}],
              [{"x": np.ones((1, 4), np.float32)}], a + a, [{"x": np.zeros((1, 0), np.float32)}]]
    fingerprints = {data_fingerprint(other)["sha256"] for other in others}
    assert len(fingerprints) == len(others) and data_fingerprint(a)["sha256"] not in fingerprints
