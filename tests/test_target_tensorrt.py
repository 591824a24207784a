"""The trt-* registry targets up to the TensorRT call: the plan per precision and TensorRT major, the
file each one builds, the options and loader chain handed to Polygraphy. TensorRT is not installed
here; the major version is given to the plan (or patched where the target asks the installation)."""

import numpy as np
import onnx
import onnx.parser
import pytest
from polygraphy.backend.trt import EngineFromNetwork

from onnx2trt_check.context import ModelContext, RunOptions
from onnx2trt_check.errors import CheckSkipped
from onnx2trt_check.targets import TARGETS, tensorrt
from onnx2trt_check.targets import trt as trt_module
from onnx2trt_check.targets.tensorrt import (
    NO_CALIBRATION,
    NO_QDQ_ARTIFACT,
    BuildInputs,
    TensorRtTarget,
    plan_build,
)
from onnx2trt_check.targets.trt import (
    FLAG_PATH,
    STRONGLY_TYPED_PATH,
    TrtTarget,
    build_loader_chain,
    file_sha256,
    trt_unavailable_reason,
)

FLOAT_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 3] x) => (float[1, 3] y) { y = Relu (x) }
"""
QDQ_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 3] x) => (float[1, 3] y) {
    s = Constant <value = float {0.1}> ()
    z = Constant <value = int8 {0}> ()
    q = QuantizeLinear (x, s, z)
    d = DequantizeLinear (q, s, z)
    y = Relu (d)
}
"""

# (precision, inputs) -> (artifact, strongly typed network, fp16 flag, int8 flag, calibrated), or a
# skip reason: the decisions of the module docstring, written out by hand.
PLANS = [
    ("fp32", BuildInputs(), ("model", False, False, False, False)),
    ("fp32", BuildInputs(trt_major=11), ("model", True, False, False, False)),
    ("fp16", BuildInputs(), ("fp16", True, False, False, False)),
    ("fp16", BuildInputs(trt_major=11), ("fp16", True, False, False, False)),
    ("fp16", BuildInputs(use_flags=True), ("model", False, True, False, False)),
    ("fp16", BuildInputs(trt_major=11, use_flags=True), "no builder precision flags"),
    ("int8", BuildInputs(), NO_QDQ_ARTIFACT),
    ("int8", BuildInputs(model_has_qdq=True, use_flags=True), ("model", True, False, False, False)),
    ("int8", BuildInputs(trt_major=11, int8_artifact=True, calibration=True), ("int8", True, False, False, False)),
    ("int8", BuildInputs(use_flags=True), NO_CALIBRATION),
    ("int8", BuildInputs(use_flags=True, calibration=True), ("model", False, False, True, True)),
    ("int8", BuildInputs(trt_major=11, use_flags=True, calibration=True), "no builder precision flags"),
    ("best", BuildInputs(model_has_qdq=True), ("model", False, True, True, False)),
    ("best", BuildInputs(int8_artifact=True, calibration=True), ("int8", False, True, True, False)),
    ("best", BuildInputs(use_flags=True, calibration=True), ("model", False, True, True, True)),
    ("best", BuildInputs(), NO_QDQ_ARTIFACT),
    ("best", BuildInputs(trt_major=11, model_has_qdq=True), "builds strongly typed networks only"),
]


@pytest.mark.parametrize(("precision", "inputs", "expected"), PLANS)
def test_the_plan_per_precision_and_tensorrt_major(precision, inputs, expected):
    plan = plan_build(precision, inputs)
    if isinstance(expected, str):
        assert expected in plan.skip_reason and plan.options is None
        return
    options = plan.options
    got = (plan.artifact, options.network_strongly_typed, options.fp16_flag, options.int8_flag, plan.calibrated)
    assert got == expected
    assert (FLAG_PATH if options.uses_builder_flags else STRONGLY_TYPED_PATH) in plan.path


def save(tmp_path, text: str, name: str) -> str:
    path = tmp_path / name
    onnx.save(onnx.parser.parse_model(text), path)
    return path


@pytest.fixture
def installed_trt(monkeypatch):
    """TensorRT 10 "installed": only the version query the plan makes is answered."""
    monkeypatch.setattr(tensorrt, "installed_trt", lambda: (10, "tensorrt"))


def context(path, **extra) -> ModelContext:
    return ModelContext(path, RunOptions(artifact_dir=path.parent / "artifacts", extra=extra))


def target(name: str) -> TensorRtTarget:
    return next(t for t in TARGETS if t.name == name)


def test_trt_targets_are_registered_as_tensorrt_and_unavailable_with_the_exact_reason():
    reason = trt_unavailable_reason()
    for name, profile in (("trt-fp32", "fp32"), ("trt-fp16", "fp16"), ("trt-int8", "int8"), ("trt-best", "int8")):
        assert target(name).engine == "tensorrt" and target(name).precision == profile
        assert target(name).unavailable_reason() == reason
    assert reason is not None  # no TensorRT, or (TensorRT-RTX installed by the test extra) no GPU here


def test_trt_fp16_builds_the_fp16_artifact_strongly_typed(tmp_path, installed_trt):
    ctx = context(save(tmp_path, FLOAT_MODEL, "m.onnx"))
    trt_fp16 = target("trt-fp16")
    path = trt_fp16.artifact(ctx)
    artifact = onnx.load(path)
    assert path != ctx.path and any(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for v in artifact.graph.value_info)
    build = trt_fp16._builds[str(path)]
    assert build.options.strongly_typed and not build.options.fp16_flag and build.engine_cache_dir is None
    loader = build_loader_chain(path, build.options)
    assert isinstance(loader, EngineFromNetwork) and loader._network.strongly_typed  # Polygraphy keeps it there


def test_trt_int8_builds_a_qdq_model_as_it_is(tmp_path, installed_trt):
    ctx = context(save(tmp_path, QDQ_MODEL, "q.onnx"), engine_cache=str(tmp_path / "engines"))
    trt_int8 = target("trt-int8")
    assert trt_int8.artifact(ctx) == ctx.path
    assert trt_int8._builds[str(ctx.path)].engine_cache_dir == str(tmp_path / "engines")


def test_trt_int8_without_a_qdq_artifact_is_skipped_with_the_reason(tmp_path, installed_trt):
    ctx = context(save(tmp_path, FLOAT_MODEL, "m.onnx"))
    with pytest.raises(CheckSkipped, match=NO_QDQ_ARTIFACT):
        target("trt-int8").artifact(ctx)


def test_the_tensorrt_10_flag_path_calibrates_over_the_calibration_data(tmp_path, installed_trt, monkeypatch):
    # Polygraphy's Calibrator subclasses a tensorrt class when constructed: record what it is given.
    monkeypatch.setattr(trt_module, "Calibrator", lambda data_loader: ("calibrator", data_loader))
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, x=np.arange(12, dtype=np.float32).reshape(4, 1, 3))
    ctx = context(save(tmp_path, FLOAT_MODEL, "m.onnx"), calibration_data=str(calibration), trt_flags=True)
    trt_int8 = target("trt-int8")
    path = trt_int8.artifact(ctx)
    build = trt_int8._builds[str(path)]
    assert path == ctx.path and build.options.int8_flag and build.options.calibration_id == file_sha256(calibration)
    assert [feed["x"].tolist() for feed in build.data_loader] == [[[0, 1, 2]], [[3, 4, 5]], [[6, 7, 8]], [[9, 10, 11]]]
    config = build_loader_chain(path, build.options, data_loader=build.data_loader)._config
    assert config.calibrator == ("calibrator", build.data_loader) and config.int8 and not config.fp16


def test_run_builds_what_artifact_planned(tmp_path, installed_trt, monkeypatch):
    ran = []
    monkeypatch.setattr(TrtTarget, "run", lambda self, path, feeds: ran.append((self.options.precision, str(path))) or [])
    ctx = context(save(tmp_path, FLOAT_MODEL, "m.onnx"))
    trt_fp32 = target("trt-fp32")
    trt_fp32.run(trt_fp32.artifact(ctx), ctx.feeds)
    assert ran == [("fp32", str(ctx.path))]


def test_trt_int8_builds_the_ort_int8_targets_qdq_artifact(tmp_path, installed_trt):
    from tiny_models import classifier

    model_path = tmp_path / "c.onnx"
    onnx.save(classifier(batch=1), model_path)
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, x=np.random.default_rng(0).uniform(0, 1, (8, 1, 3, 8, 8)).astype(np.float32))
    ctx = context(model_path, calibration_data=str(calibration))
    trt_int8 = target("trt-int8")
    path = trt_int8.artifact(ctx)
    assert path == target("ort-int8").artifact(ctx)  # one int8 file, built once, run by both
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(path).graph.node)
    assert trt_int8._builds[str(path)].options.strongly_typed and trt_int8.reference(ctx) is ctx.reference


def test_the_accuracy_figures_name_the_build_path(monkeypatch, tmp_path):
    """The accuracy item's figures carry the path the engine was built by (Target.figures)."""
    from types import SimpleNamespace

    from onnx2trt_check.targets import tensorrt as trt_targets
    from onnx2trt_check.targets.trt import TrtBuildOptions

    target = trt_targets.TensorRtTarget("fp32", "test")
    plan = trt_targets.BuildPlan(artifact="model", options=TrtBuildOptions(precision="fp32"), calibrated=False, skip_reason="")
    monkeypatch.setattr(trt_targets.TensorRtTarget, "plan", lambda self, ctx: plan)
    monkeypatch.setattr(trt_targets.TensorRtTarget, "prepare", lambda self, ctx, plan, engine_cache: (ctx.path, None))
    ctx = SimpleNamespace(path=tmp_path / "m.onnx")
    assert target.figures(ctx) == {}
    target.artifact(ctx)
    assert target.figures(ctx) == {"path": plan.path} and plan.path
