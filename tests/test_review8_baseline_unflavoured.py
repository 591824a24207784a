"""review8: a trt-* baseline recorded before file names carried the TensorRT flavour
(`m.trt-fp16.<env>.json`) is no longer found (`m.trt-fp16+tensorrt-rtx-1.<env>.json` is looked
for). The gate fails, as it should, but said only "create it with --baseline-update": re-recording
blesses whatever the engine computes now in place of the kept figures. It now names the old file
and the rename, and the renamed file is the one compared."""

import dataclasses
import shutil
import types

import pytest
from tiny_models import classifier, save

from onnx2trt_check import baseline as store
from onnx2trt_check.pytest_plugin import baselines
from onnx2trt_check.targets import get_target
from onnx2trt_check.trt import flavour

RTX = flavour.Flavour("tensorrt-rtx", "1.7.1.116")
HERE = {"cpu": "a"}


@pytest.fixture
def setup(monkeypatch, tmp_path):
    monkeypatch.setattr(flavour, "select", lambda choice=None: RTX)
    monkeypatch.setattr(baselines, "environment_key", lambda: HERE)
    ctx = types.SimpleNamespace(path=save(classifier(), tmp_path / "m.onnx"))
    settings = baselines.Settings(baseline_dir=tmp_path / "bl")
    old = store.Baseline(model_name="m.onnx", model_sha256="x", target="trt-fp16", build_options={}, environment=HERE,
                         tool_versions={}, accuracy={"y": {"cosine": 1.0}})
    return ctx, settings, store.write_baseline(settings.baseline_dir, old)


def test_the_missing_message_names_the_old_file_and_the_rename(setup):
    ctx, settings, old = setup
    assert old.name.startswith("m.trt-fp16.")
    located = baselines.locate(ctx, get_target("trt-fp16"), settings)
    assert located.compared is None
    message = str(baselines._missing(located, ctx, get_target("trt-fp16"), settings, "accuracy"))
    assert f"TensorRT-RTX 1.7.1.116 recorded {old.name}" in message and "rename it to the expected name" in message
    assert located.expected.name in message


def test_the_renamed_old_file_is_the_baseline_compared(setup):
    ctx, settings, old = setup
    expected = baselines.locate(ctx, get_target("trt-fp16"), settings).expected
    shutil.move(old, expected)
    found = baselines.locate(ctx, get_target("trt-fp16"), settings)
    assert found.compared == expected and found.baseline.accuracy == {"y": {"cosine": 1.0}}


def test_an_onnxruntime_target_says_nothing_of_it(setup):
    ctx, settings, _ = setup
    located = baselines.locate(ctx, get_target("ort"), dataclasses.replace(settings))
    assert "rename" not in str(baselines._missing(located, ctx, get_target("ort"), settings, "accuracy"))
