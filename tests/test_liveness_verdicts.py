"""A model whose outputs ignore its inputs on the data (liveness.py) passes nowhere, not only a
failed reference::run: before, every target and every transform item PASSED it at max abs 0,
`optimize` printed "verified" and `quantize` wrote its int8 model, all with exit 0 (zoo10's
random-init Keras MobileNetV2, softmax 0.1 on every input). The items fail "cannot be verified"
(a skip left `-k target` green: review10)."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check import api
from onnx2trt_check.cli.main import main

# Relu(x - 10) is 0 on inputs in 0..1: the output is Softmax(0 * w) = 0.25 whatever the input is.
# The Identity gives the transforms something to change (onnxsim and onnxoptimizer remove it).
DEAD = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (float[1,4] y) <float[4,4] w = {1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7}, float ten = {10.0}> {
  i = Identity(x)
  s = Sub(i, ten)
  r = Relu(s)
  m = MatMul(r, w)
  y = Softmax<axis = -1>(m)
}"""
ALIVE = DEAD.replace("float ten = {10.0}", "float ten = {0.0}")


def _files(tmp_path, text: str):
    model = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(text), model)
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(0, 1, (20, 1, 4)).astype(np.float32))
    return model, data


def _checks(model, data) -> dict[str, tuple[str, str]]:
    """(outcome, message) per item of `pytest --model` on the model, by 'family::check'."""
    result = api.check(str(model), pytest_args=[f"--calibration-data={data}", "-p", "no:cacheprovider", "-q",
                                                "-k", "target or transform or reference"])
    families = next(iter(result.report["models"].values()))["families"]
    return {f"{family}::{name}": (check["outcome"], check["message"])
            for family, entry in families.items() for name, check in entry["checks"].items()}


VERDICT_ITEMS = ("target[ort]::accuracy", "target[ort-int8]::accuracy", "transform[simplify]::equivalence", "transform[pipeline]::equivalence")


def test_targets_and_transforms_cannot_be_verified_on_a_dead_model(tmp_path):
    checks = _checks(*_files(tmp_path, DEAD))
    assert checks["reference::run"][0] == "failed"
    for item in VERDICT_ITEMS:
        outcome, message = checks[item]
        assert outcome == "failed" and "cannot be verified" in message, (item, checks[item])


def test_a_gate_on_the_targets_alone_is_not_green_on_a_dead_model(tmp_path):
    model, data = _files(tmp_path, DEAD)
    result = api.check(str(model), pytest_args=[f"--calibration-data={data}", "-p", "no:cacheprovider", "-q", "-k", "target"])
    assert result.exit_code == 1 and not result.passed


def test_the_same_items_pass_on_the_live_model(tmp_path):
    checks = _checks(*_files(tmp_path, ALIVE))
    assert checks["reference::run"][0] == "passed"
    for item in VERDICT_ITEMS:
        assert checks[item][0] == "passed", (item, checks[item])


def test_optimize_writes_nothing_for_a_dead_model(tmp_path, capsys):
    model, _ = _files(tmp_path, DEAD)
    out_file = tmp_path / "o.onnx"
    assert main(["optimize", str(model), "-o", str(out_file)]) == 1
    out = capsys.readouterr().out
    assert "NOT written: nothing is verified: every output is the same on all 4 feeds" in out, out
    assert not out_file.exists()
    result = api.optimize(str(model))
    assert not result.passed and "ignores its inputs" in result.unverifiable


def test_optimize_writes_the_live_model(tmp_path, capsys):
    model, _ = _files(tmp_path, ALIVE)
    out_file = tmp_path / "o.onnx"
    assert main(["optimize", str(model), "-o", str(out_file)]) == 0, capsys.readouterr().out
    assert out_file.exists()


def test_quantize_refuses_a_dead_model_unless_told(tmp_path, capsys):
    model, data = _files(tmp_path, DEAD)
    out_file = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "-o", str(out_file), "--calibration-data", str(data)]) == 1
    out = capsys.readouterr().out
    assert "nothing is verified: every output is the same on all 4 feeds" in out, out
    assert not out_file.exists()
    assert main(["quantize", str(model), "-o", str(out_file), "--calibration-data", str(data), "--accept-degraded"]) == 0
    assert "unverified (--accept-degraded)" in capsys.readouterr().out
    assert out_file.exists()


def test_quantize_writes_the_live_model(tmp_path, capsys):
    model, data = _files(tmp_path, ALIVE)
    out_file = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "-o", str(out_file), "--calibration-data", str(data)]) == 0, capsys.readouterr().out
    assert out_file.exists()
