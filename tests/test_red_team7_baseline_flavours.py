"""Red team 7: a trt-* target's baseline was keyed by the target's name alone (`m.trt-fp16.<env>.json`),
so figures recorded with TensorRT-RTX were compared with a TensorRT 10 run as one baseline (on the
same machine with both installed, or through the fallback to another machine's file). The store
name now carries the flavour and major (`trt-fp16+tensorrt-rtx-1`), so each flavour gates against
its own figures and a missing one fails asking for it; ONNX Runtime targets keep their names."""

import dataclasses
import types

import pytest
from tiny_models import classifier, save

from onnx2trt_check import baseline as store
from onnx2trt_check.pytest_plugin import baselines
from onnx2trt_check.targets import get_target
from onnx2trt_check.trt import flavour

RTX, TRT10 = flavour.Flavour("tensorrt-rtx", "1.7.1.116"), flavour.Flavour("tensorrt", "10.13.0.35")


def located(monkeypatch, chosen, ctx, settings, environment):
    monkeypatch.setattr(flavour, "select", lambda choice=None: chosen)
    monkeypatch.setattr(baselines, "environment_key", lambda: environment)
    return baselines.locate(ctx, get_target("trt-fp16"), settings)


@pytest.mark.parametrize("same_machine", [True, False])
def test_a_tensorrt_rtx_baseline_is_never_the_tensorrt_10_baseline(monkeypatch, tmp_path, same_machine):
    ctx = types.SimpleNamespace(path=save(classifier(), tmp_path / "m.onnx"))
    settings = baselines.Settings(baseline_dir=tmp_path / "bl")
    here, there = {"cpu": "a"}, ({"cpu": "a"} if same_machine else {"cpu": "b"})
    recorded = located(monkeypatch, RTX, ctx, dataclasses.replace(settings, update=True), there).expected
    baseline = store.Baseline(model_name="m.onnx", model_sha256="x", target=baselines.store_target(get_target("trt-fp16")),
                              build_options={}, environment=there, tool_versions={}, accuracy={"y": {"cosine": 1.0}})
    assert store.write_baseline(settings.baseline_dir, baseline) == recorded  # what --baseline-update writes
    assert "tensorrt-rtx" in recorded.name
    found = located(monkeypatch, TRT10, ctx, settings, here)
    assert found.compared is None and found.baseline is None  # the gate fails: no TensorRT 10 baseline
    assert located(monkeypatch, RTX, ctx, settings, here).compared == recorded


def test_onnxruntime_targets_keep_their_store_names():
    assert [baselines.store_target(get_target(n)) for n in ("ort", "ort-fp16", "cpu-fp16-emu", "ort-int8")] == ["ort", "ort-fp16", "cpu-fp16-emu", "ort-int8"]
