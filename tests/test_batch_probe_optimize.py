"""plant12: a transform whose result bakes batch 1 into a Reshape was verified on the data's batch 1
and `optimize` wrote it, though the model declares its batch free. The steps are now also verified
at a second batch size (shape_probe.py), unless the model itself fails there."""


import numpy as np
import onnx
import onnx.parser
from planted_transforms import plant_in_transform
from tiny_models import with_output_through

from onnx2trt_check import api

CONV_BN = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,2,4,4] x) => (float[N,2,4,4] y)
  <float[2,2,1,1] w = {0.5, -1.0, 0.25, 2.0}, float[2] s = {1.5, 0.5}, float[2] b = {0.1, -0.2},
   float[2] m = {0.3, -0.1}, float[2] v = {2.0, 0.5}> {
  c = Conv(x, w)
  y = BatchNormalization(c, s, b, m, v)
}"""


def _bake_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    return with_output_through(model, "Reshape", {"batch_one": np.array([1, 2, 4, 4], np.int64)})


def _optimize(tmp_path, monkeypatch, *, bake: bool, feeds: int = 1):
    model = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(CONV_BN), model)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(feeds, 1, 2, 4, 4)).astype(np.float32))
    if bake:
        plant_in_transform(monkeypatch, "fold_conv_bn", _bake_batch_one)
    return api.optimize(str(model), output=tmp_path / "o.onnx", inputs=str(data), passes=["fold_conv_bn"])


def test_a_result_with_the_batch_baked_in_is_not_written(tmp_path, monkeypatch):
    result = _optimize(tmp_path, monkeypatch, bake=True)
    assert not result.passed and result.pipeline.failed_step == "fold_conv_bn"
    assert result.written is None and not (tmp_path / "o.onnx").exists()
    assert "batch 2 (the only feed twice" in result.other_shapes


def test_the_honest_fold_is_written_and_says_it_was_verified_at_another_batch(tmp_path, monkeypatch):
    result = _optimize(tmp_path, monkeypatch, bake=False, feeds=2)
    assert result.passed and result.written is not None
    assert result.other_shapes.startswith("also verified at batch 2 (feeds stacked in pairs")


def test_a_model_that_fails_at_another_batch_itself_is_verified_at_its_own(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    onnx.save(_bake_batch_one(onnx.parser.parse_model(CONV_BN)), model)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(2, 1, 2, 4, 4)).astype(np.float32))
    result = api.optimize(str(model), output=tmp_path / "o.onnx", inputs=str(data), passes=["fold_conv_bn"])
    assert result.passed and result.written is not None
    assert result.other_shapes.startswith("not verified at batch 2") and "the model itself fails there" in result.other_shapes


def test_the_transform_item_of_pytest_fails_it_too(tmp_path, monkeypatch):
    _optimize(tmp_path, monkeypatch, bake=True)  # plants the baked fold_conv_bn (for this test's process)
    result = api.check(str(tmp_path / "m.onnx"), pytest_args=[f"--inputs={tmp_path / 'x.npz'}", "-k", "transform", "-p", "no:cacheprovider", "-q"])
    families = next(iter(result.report["models"].values()))["families"]
    assert families["transform[fold_conv_bn]"]["checks"]["equivalence"]["outcome"] == "failed", families["transform[fold_conv_bn]"]
