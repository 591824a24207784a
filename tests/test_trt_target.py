"""The TensorRT target up to the TensorRT call: loader chains, configs, cache keys, availability.

TensorRT is not installed here, so nothing below builds an engine or claims a TensorRT number.
Polygraphy keeps EngineFromNetwork's network/config in `_network`/`_config` (no public accessor);
the tests read them there.
"""

import dataclasses
import gc
import hashlib
import importlib.util
import sys
import types

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polygraphy.backend.common import BytesFromPath
from polygraphy.backend.trt import (
    CreateConfig,
    EngineFromBytes,
    EngineFromNetwork,
    NetworkFromOnnxPath,
    SaveEngine,
)

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.targets import trt as trt_module
from onnx2trt_check.targets import trt as trt_target
from onnx2trt_check.targets.timing import timed_runner
from onnx2trt_check.targets.trt import (
    EngineCache,
    InputRange,
    TrtBuildOptions,
    TrtTarget,
    build_loader_chain,
    engine_cache_key,
    profile_from_shapes,
    trt_unavailable_reason,
)
from onnx2trt_check.trt import devices

FLOAT_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 3] y) { y = Relu (x) }
"""
QDQ_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3] x) => (float[N, 3] y) {
    s = Constant <value = float {0.1}> ()
    z = Constant <value = int8 {0}> ()
    q = QuantizeLinear (x, s, z)
    d = DequantizeLinear (q, s, z)
    y = Relu (d)
}
"""


@pytest.fixture
def float_model(tmp_path):
    path = tmp_path / "float.onnx"
    onnx.save(onnx.parser.parse_model(FLOAT_MODEL), path)
    return str(path)


@pytest.fixture
def qdq_model(tmp_path):
    path = tmp_path / "qdq.onnx"
    onnx.save(onnx.parser.parse_model(QDQ_MODEL), path)
    return str(path)


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Any `import tensorrt` fails, whatever is installed: proves a code path never imports it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def fake_calibrator(monkeypatch):
    """Polygraphy's Calibrator subclasses a tensorrt class at construction; record the call instead."""
    calls = []

    def calibrator(data_loader):
        calls.append(data_loader)
        return ("calibrator", len(calls))

    monkeypatch.setattr(trt_target, "Calibrator", calibrator)
    return calls


def fake_tensorrt(monkeypatch, version="10.9.0"):
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.MemoryPoolType = types.SimpleNamespace(WORKSPACE="<trt.MemoryPoolType.WORKSPACE>")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


def parts(chain):
    assert isinstance(chain, EngineFromNetwork)
    network, config = chain._network, chain._config
    assert isinstance(network, NetworkFromOnnxPath)
    assert isinstance(config, CreateConfig)
    return network, config


# --- the loader chain each option produces -------------------------------------------------------


def test_fp32_chain_has_no_precision_flags(float_model, no_tensorrt):
    network, config = parts(build_loader_chain(float_model, TrtBuildOptions()))
    assert network.path == float_model
    assert network.strongly_typed is False
    assert (config.fp16, config.int8, config.tf32) == (False, False, False)
    assert (config.memory_pool_limits, config.calibrator, config.timing_cache_path) == (None, None, None)
    assert [len(profile) for profile in config.profiles] == [0]  # Polygraphy's default: one empty profile


def test_fp16_on_trt10_sets_the_fp16_flag(float_model, no_tensorrt):
    network, config = parts(build_loader_chain(float_model, TrtBuildOptions(precision="fp16", tf32=True)))
    assert network.strongly_typed is False
    assert (config.fp16, config.int8, config.tf32) == (True, False, True)


def test_int8_without_qdq_calibrates_over_the_data_loader(float_model, no_tensorrt, fake_calibrator):
    feeds = [{"x": [[0.0, 1.0, 2.0]]}]
    _network, config = parts(build_loader_chain(float_model, TrtBuildOptions(precision="int8"), data_loader=feeds))
    assert (config.fp16, config.int8) == (False, True)
    assert fake_calibrator == [feeds]
    assert config.calibrator == ("calibrator", 1)


def test_best_sets_fp16_and_int8(float_model, no_tensorrt, fake_calibrator):
    _network, config = parts(build_loader_chain(float_model, TrtBuildOptions(precision="best"), data_loader=[{}]))
    assert (config.fp16, config.int8) == (True, True)
    assert len(fake_calibrator) == 1


def test_int8_without_qdq_or_data_is_a_config_error(float_model, no_tensorrt):
    with pytest.raises(ConfigError, match="data_loader"):
        build_loader_chain(float_model, TrtBuildOptions(precision="int8"))


def test_int8_with_qdq_needs_no_calibrator(qdq_model, no_tensorrt, fake_calibrator):
    _network, config = parts(build_loader_chain(qdq_model, TrtBuildOptions(precision="int8"), data_loader=[{}]))
    assert config.int8 is True
    assert config.calibrator is None
    assert fake_calibrator == []


def test_strongly_typed_sets_no_builder_flag(qdq_model, no_tensorrt):
    network, config = parts(build_loader_chain(qdq_model, TrtBuildOptions(precision="int8", strongly_typed=True)))
    assert network.strongly_typed is True
    assert (config.fp16, config.int8, config.calibrator) == (False, False, None)


@pytest.mark.parametrize("precision", ["fp16", "int8", "best"])
def test_trt11_flag_request_is_an_error_with_the_fix(precision):
    with pytest.raises(ConfigError, match="build the fp16/QDQ ONNX artifact and use strongly_typed=True"):
        TrtBuildOptions(precision=precision, trt_major=11)


def test_trt11_networks_are_always_strongly_typed(float_model, no_tensorrt):
    network, config = parts(build_loader_chain(float_model, TrtBuildOptions(trt_major=11)))
    assert network.strongly_typed is True
    typed_fp16 = TrtBuildOptions(precision="fp16", strongly_typed=True, trt_major=11)
    network, config = parts(build_loader_chain(float_model, typed_fp16))
    assert (network.strongly_typed, config.fp16) == (True, False)


def test_workspace_limit_resolves_to_the_trt_pool_only_at_build_time(float_model, no_tensorrt, monkeypatch):
    _network, config = parts(build_loader_chain(float_model, TrtBuildOptions(workspace_bytes=1 << 28)))
    assert config.memory_pool_limits == {"WORKSPACE": 1 << 28}
    fake = fake_tensorrt(monkeypatch)
    assert list(config.memory_pool_limits.items()) == [(fake.MemoryPoolType.WORKSPACE, 1 << 28)]


def test_profile_and_timing_cache_reach_polygraphy(float_model, no_tensorrt, tmp_path):
    cache = str(tmp_path / "tactics.cache")
    options = TrtBuildOptions(profile=profile_from_shapes({"x": ((1, 3), (4, 3), (8, 3))}), timing_cache=cache)
    chain = build_loader_chain(float_model, options)
    _network, config = parts(chain)
    [profile] = config.profiles
    assert (profile["x"].min, profile["x"].opt, profile["x"].max) == ((1, 3), (4, 3), (8, 3))
    assert config.timing_cache_path == cache  # CreateConfig stores load_timing_cache here
    assert chain.timing_cache_path == cache


@pytest.mark.parametrize(
    ("lo", "mid", "hi"),
    [((1, 3), (4,), (8, 3)), ((2, 3), (1, 3), (8, 3)), ((1, 3), (4, 3), (8, 2))],
)
def test_bad_profile_is_a_config_error(lo, mid, hi):
    with pytest.raises(ConfigError, match="input 'x'"):
        InputRange("x", lo, mid, hi)


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="'fp8' is not one of"):
        TrtBuildOptions(precision="fp8")


# --- the engine cache ---------------------------------------------------------------------------


def test_cache_miss_builds_and_saves_under_the_key(float_model, no_tensorrt, tmp_path):
    options = TrtBuildOptions(precision="fp16")
    cache = EngineCache(str(tmp_path / "engines"), "10.9.0", "NVIDIA Orin")
    chain = build_loader_chain(float_model, options, engine_cache=cache)
    with open(float_model, "rb") as stream:
        model_sha = hashlib.sha256(stream.read()).hexdigest()
    key = engine_cache_key(model_sha, options, "10.9.0", "NVIDIA Orin")
    assert isinstance(chain, SaveEngine)
    assert chain.path == str(tmp_path / "engines" / f"{key}.engine")
    parts(chain._engine)


def test_cache_hit_loads_the_engine_bytes(float_model, no_tensorrt, tmp_path):
    cache = EngineCache(str(tmp_path), "10.9.0", "NVIDIA Orin")
    cached = cache.path_for(float_model, TrtBuildOptions())
    with open(cached, "wb") as stream:
        stream.write(b"serialized engine")
    chain = build_loader_chain(float_model, TrtBuildOptions(), engine_cache=cache)
    assert isinstance(chain, EngineFromBytes)
    assert isinstance(chain._serialized_engine, BytesFromPath)
    assert chain._serialized_engine() == b"serialized engine"


def test_calibrated_engine_is_cached_only_with_a_calibration_id(float_model, no_tensorrt, fake_calibrator, tmp_path):
    cache = EngineCache(str(tmp_path), "10.9.0", "gpu")
    unnamed = build_loader_chain(float_model, TrtBuildOptions(precision="int8"), data_loader=[{}], engine_cache=cache)
    assert isinstance(unnamed, EngineFromNetwork)
    named = TrtBuildOptions(precision="int8", calibration_id="sha256:abc")
    assert isinstance(build_loader_chain(float_model, named, data_loader=[{}], engine_cache=cache), SaveEngine)


OPTION_CHANGES = {
    "precision": "fp16",
    "strongly_typed": True,
    "tf32": True,
    "workspace_bytes": 1 << 20,
    "profile": (InputRange("x", (1, 3), (2, 3), (4, 3)),),
    "calibration_id": "calib-v2",
    "trt_major": 11,
    "flavour": "tensorrt-rtx",
}
texts = st.text(min_size=1, max_size=12)


@given(sha=st.binary(min_size=1, max_size=8), version=texts, gpu=texts, field=st.sampled_from(sorted(OPTION_CHANGES)))
def test_cache_key_changes_with_each_component_and_is_stable_otherwise(sha, version, gpu, field):
    model = hashlib.sha256(sha).hexdigest()
    base = TrtBuildOptions(strongly_typed=field == "trt_major")  # trt_major=11 needs the typed path
    key = engine_cache_key(model, base, version, gpu)
    assert key == engine_cache_key(model, dataclasses.replace(base), version, gpu)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != engine_cache_key(hashlib.sha256(sha + b"!").hexdigest(), base, version, gpu)
    assert key != engine_cache_key(model, base, version + ".1", gpu)
    assert key != engine_cache_key(model, base, version, gpu + " Ti")
    assert key != engine_cache_key(model, dataclasses.replace(base, **{field: OPTION_CHANGES[field]}), version, gpu)
    # The timing cache only speeds up the build; the engine stays valid, so the key ignores it.
    assert key == engine_cache_key(model, dataclasses.replace(base, timing_cache="/tmp/t.cache"), version, gpu)


# --- availability ---------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_reason_names_the_missing_tensorrt_and_the_install_command():
    assert trt_unavailable_reason("tensorrt") == "TensorRT is not installed (pip install 'onnx2trt_check[trt]')"


def test_reason_when_tensorrt_import_is_blocked(no_tensorrt):
    assert trt_unavailable_reason("tensorrt").startswith("TensorRT is not installed")


def test_reason_carries_the_import_error_of_a_broken_install(monkeypatch, tmp_path):
    package = tmp_path / "tensorrt"
    package.mkdir()
    (package / "__init__.py").write_text("raise OSError('libnvinfer.so.10: cannot open shared object file')\n")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = "TensorRT (tensorrt) failed to import: OSError: libnvinfer.so.10: cannot open shared object file"
    assert trt_unavailable_reason("tensorrt") == expected


def test_tensorrt_present_but_no_driver(monkeypatch):
    fake_tensorrt(monkeypatch)

    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(devices.ctypes, "CDLL", no_library)
    reason = trt_unavailable_reason("tensorrt")
    assert reason.startswith("no CUDA device is visible (no NVIDIA driver: none of libcuda.so.1")
    assert "TensorRT 10.9.0 builds here" in reason


class FakeDriver:
    """The four CUDA driver calls the probe makes, with a chosen device list."""

    def __init__(self, names):
        self.names = names

    def cuInit(self, flags):
        return 0

    def cuDeviceGetCount(self, count_ref):
        count_ref._obj.value = len(self.names)
        return 0 if self.names else 100  # 100 is CUDA_ERROR_NO_DEVICE

    def cuDeviceGet(self, device_ref, index):
        device_ref._obj.value = index
        return 0

    def cuDeviceGetName(self, buffer, size, device):
        buffer.value = self.names[device.value].encode()
        return 0


def test_tensorrt_present_but_driver_sees_no_device(monkeypatch):
    fake_tensorrt(monkeypatch)
    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: FakeDriver([]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    reason = trt_unavailable_reason("tensorrt")
    expected = "no CUDA device is visible (CUDA driver libcuda.so.1: cuDeviceGetCount found no device"
    assert reason.startswith(expected)
    assert "CUDA_VISIBLE_DEVICES=''" in reason


def test_tensorrt_and_a_device_mean_available(monkeypatch):
    fake_tensorrt(monkeypatch)
    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: FakeDriver(["NVIDIA Orin", "NVIDIA A100"]))
    assert trt_unavailable_reason("tensorrt") is None
    assert trt_target.cuda_devices()[0] == ["NVIDIA Orin", "NVIDIA A100"]


# --- the target -------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "best"])
def test_target_names(precision):
    assert TrtTarget(TrtBuildOptions(precision=precision)).name == f"trt-{precision}"


def test_describe_names_the_path(float_model, qdq_model):
    flags = TrtTarget(TrtBuildOptions(precision="int8"))
    assert "TensorRT 10 builder flags" in flags.describe()
    assert "fp16=False int8=True" in flags.describe()
    assert "Calibrator" in flags.describe(float_model)
    assert "Calibrator" not in flags.describe(qdq_model)
    typed = TrtTarget(TrtBuildOptions(precision="int8", strongly_typed=True))
    assert "strongly typed network" in typed.describe()
    assert "Q/DQ" in typed.describe()


def test_target_reports_the_same_reason(no_tensorrt):
    assert TrtTarget(TrtBuildOptions()).unavailable_reason() == trt_unavailable_reason("tensorrt")
    assert TrtTarget(TrtBuildOptions(flavour="tensorrt-rtx")).unavailable_reason() == trt_unavailable_reason("tensorrt-rtx")


def test_run_refuses_options_for_another_major(monkeypatch, float_model):
    fake_tensorrt(monkeypatch, version="11.1.0")
    with pytest.raises(ConfigError, match="trt_major=11"):
        TrtTarget(TrtBuildOptions()).run(float_model, [{}])


class RecordingRunner:
    """Stands in for Polygraphy's TrtRunner (no GPU here): records activation and calls."""

    events: list = []

    def __init__(self, loader):
        self.loader = loader

    def activate(self):
        RecordingRunner.events.append("activate")

    def infer(self, feed):
        RecordingRunner.events.append(("infer", sorted(feed)))
        return {"y": np.zeros(1, np.float32)}

    def deactivate(self):
        RecordingRunner.events.append("deactivate")


def test_latency_runner_builds_once_infers_per_call_and_deactivates(monkeypatch, float_model):
    fake_tensorrt(monkeypatch, version="10.9.0")
    monkeypatch.setattr(trt_module, "TrtRunner", RecordingRunner)
    RecordingRunner.events = []
    call = timed_runner(TrtTarget(TrtBuildOptions()), float_model, {"x": np.zeros((1, 4), np.float32)})
    call()
    call()
    assert RecordingRunner.events == ["activate", ("infer", ["x"]), ("infer", ["x"])]
    del call
    gc.collect()
    assert RecordingRunner.events[-1] == "deactivate"
