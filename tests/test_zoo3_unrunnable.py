"""Found on foreign models (zoo3): a model ONNX Runtime cannot run, given to `optimize` or
`quantize`. torch 2.13's dynamo exporter with optimize=False wrote a Conv3d without bias as
Conv(x, w, Expand(0, [C, 2])): a bias ORT refuses at run time ("bias must be a 1D tensor"), which
onnx.checker and shape inference accept. `optimize` blamed its first modifying step ("step
'simplify' failed verification; leave it out with --passes"), and wrote the model as "verified"
when the chosen passes changed nothing; `quantize` ended in a traceback (exit 1). Both now refuse
the model before any work, naming ONNX Runtime's reason (exit 4), as `bisect` does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.cli.main import main


def conv_with_a_2d_bias() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(np.array([4, 2], np.int64), "bias_shape"),
               numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("Expand", ["zero", "bias_shape"], ["b"]),
             helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)  # valid ONNX: only running it fails
    return model


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(conv_with_a_2d_bias(), str(path))
    return path


@pytest.mark.parametrize("passes", [[], ["--passes", "fold_conv_bn"]])
def test_optimize_refuses_a_model_onnx_runtime_cannot_run(model_path, tmp_path, capsys, passes):
    out = tmp_path / "out.onnx"
    assert main(["optimize", str(model_path), "-o", str(out), *passes]) == 4
    captured = capsys.readouterr()
    assert "ONNX Runtime cannot run" in captured.err and "bias must be a 1D tensor" in captured.err
    assert "Traceback" not in captured.err and "simplify" not in captured.out
    assert not out.exists()


def test_quantize_refuses_a_model_onnx_runtime_cannot_run(model_path, tmp_path, capsys):
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(1).uniform(0, 1, (8, 1, 2, 6, 6)).astype(np.float32))
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(model_path), "-o", str(out), "--calibration-data", str(data)]) == 4
    captured = capsys.readouterr()
    assert "ONNX Runtime cannot run" in captured.err and "Traceback" not in captured.err
    assert not out.exists()
