"""`--junitxml` carries every item's key figures as flat properties, under xdist too, and the
figures equal the JSON report's."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from test_baseline_checks import ONLY, add_noise
from tiny_models import classifier, save

from onnx2trt_check.junit import junit_properties


def test_accuracy_latency_baseline_and_task_figures_become_flat_properties():
    record = {
        "family": "baseline[ort]", "message": "line one\nline two",
        "figures": {
            "outputs": {"logits": {"sqnr_db": 41.5, "cosine": 0.999, "max_abs": float("inf"), "top1": None, "name": "logits"}},
            "median_ms": 1.25, "p99_ms": 3, "verdict": "regressed",
            "decisions": [{"output": "logits", "metric": "sqnr_db", "ratio": 0.5}, {"kind": "latency", "metric": "median", "ratio": 2.0},
                          {"output": "logits", "metric": "cosine", "ratio": None}],
        },
    }
    assert junit_properties(record) == [
        ("onnx2trt_check.message", "line one"),
        ("logits.sqnr_db", "41.5"), ("logits.cosine", "0.999"), ("logits.max_abs", "inf"),
        ("latency.median_ms", "1.25"), ("latency.p99_ms", "3.0"),
        ("baseline.logits.sqnr_db.ratio", "0.5"), ("baseline.latency.median.ratio", "2.0"), ("baseline.verdict", "regressed"),
    ]
    task = {"family": "task[ort]", "figures": {"figures": {"top1": 0.97}, "drop": {"top1": 0.01}, "outputs": "not a dict"}}
    assert junit_properties(task) == [("task.top1", "0.97"), ("task.top1.drop", "0.01")]


def properties(xml_path) -> dict[str, dict[str, str]]:
    """testcase name -> its properties."""
    root = ET.parse(xml_path).getroot()
    return {f'{case.get("classname")}.{case.get("name")}': {p.get("name"): p.get("value") for p in case.iter("property")} for case in root.iter("testcase")}


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_the_junit_xml_holds_the_report_figures(pytester, xdist):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_subprocess("--model", "m.onnx", *ONLY, "--report-json", "r.json", "--junitxml", "j.xml", *xdist)
    assert result.ret == 0
    figures = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]["target[ort]"]["checks"]["accuracy"]["figures"]
    (name, stats), = figures["outputs"].items()
    props = next(p for case, p in properties(pytester.path / "j.xml").items() if "target" in case and "accuracy" in case)
    assert float(props[f"{name}.sqnr_db"]) == pytest.approx(float(stats["sqnr_db"])) or math.isinf(float(stats["sqnr_db"]))
    assert float(props[f"{name}.max_abs"]) == pytest.approx(stats["max_abs"])
    assert float(props[f"{name}.cosine"]) == pytest.approx(stats["cosine"])
    assert not any(key == "onnx2trt_check" for p in properties(pytester.path / "j.xml").values() for key in p)  # no nested repr


def test_a_baseline_regression_shows_its_ratio_in_the_junit_xml(pytester, monkeypatch):
    save(classifier(), pytester.path / "m.onnx")
    base = ("--model", "m.onnx", *ONLY, "--baseline-dir", "bl")
    assert pytester.runpytest_inprocess(*base, "--baseline-update").ret == 0
    add_noise(monkeypatch)
    result = pytester.runpytest_inprocess(*base, "--junitxml", "j.xml")
    assert result.ret == 1
    props = next(p for case, p in properties(pytester.path / "j.xml").items() if "baseline" in case and "accuracy" in case)
    ratios = {k: float(v) for k, v in props.items() if k.startswith("baseline.") and k.endswith(".ratio")}
    assert props["baseline.verdict"] == "regression" and ratios
    assert any(r > 1 for k, r in ratios.items() if "max_abs" in k) and all(np.isfinite(list(ratios.values())))
