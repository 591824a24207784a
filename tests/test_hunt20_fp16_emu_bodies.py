"""hunt20: cpu-fp16-emu rounded the main graph only. Under --fp16-no-fallback (TensorRT 10's fp16 flag
keeps no layer fp32) the artifact held a whole Loop body in fp16, whose activation reached 1.6e5, inf
in fp16; cpu-fp16-emu and `bisect --fp16-no-fallback`, which exist to show that overflow, passed the
model at 71 dB. Body tensors the artifact stores in fp16 are now rounded too."""

import numpy as np
import onnx
from test_hunt20_fp16_loop_body import loop_model

from onnx2trt_check.precision.fp16 import convert_to_fp16
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets.fp16 import fp16_storage_emulation


def emulated(scale: float):
    model = loop_model()
    next(init for init in model.graph.initializer if init.name == "k").CopyFrom(onnx.numpy_helper.from_array(np.array(scale, np.float32), "k"))
    artifact = convert_to_fp16(model, block_ops=()).model  # no fallback: the body in fp16
    feeds = [{"x": np.random.default_rng(i).standard_normal((1, 4, 8, 8)).astype(np.float32)} for i in range(3)]
    emulation = fp16_storage_emulation(model, artifact)
    onnx.checker.check_model(emulation, full_check=True)
    return [r["y"] for r in run_model(model, feeds)], [r["y"] for r in run_model(emulation, feeds)]


def test_an_overflow_inside_a_loop_body_shows_in_the_emulation():
    _, got = emulated(30000.0)
    assert not all(np.isfinite(g).all() for g in got)


def test_a_benign_body_stays_close():
    expected, got = emulated(1.0)
    errors = [np.abs(e - g).max() for e, g in zip(expected, got)]
    assert 0 < max(errors) < 0.05


def test_bisects_fp16_lowering_rounds_a_loop_body_too():
    # bisect --fp16-no-fallback --reduce/--sensitivity lower with sensitivity.fp16_emulation: it said
    # "the whole model does not fail: nothing to reduce" where cpu-fp16-emu failed
    from onnx2trt_check.bisection.sensitivity import fp16_emulation

    model = loop_model()
    model.graph.node[1].name = ""  # unnamed, as exporters leave it: its label is Loop(y)
    feeds = [{"x": np.random.default_rng(i).standard_normal((1, 4, 8, 8)).astype(np.float32)} for i in range(2)]
    lowered = fp16_emulation(model)
    assert not all(np.isfinite(r["y"]).all() for r in run_model(lowered, feeds))
    kept = fp16_emulation(model, keep_fp32=["Loop(y)"])
    assert all(np.isfinite(r["y"]).all() for r in run_model(kept, feeds))
