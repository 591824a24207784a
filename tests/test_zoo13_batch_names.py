"""zoo13: torch.onnx.export(dynamo=True) of a transformers encoder names the batch of each input by
its own symbol (`input_ids: [s33, s50]`, `attention_mask: [s6, s50]`), so the second-batch probe
(shape_probe.other_batch, plant12) was dropped for it: a derived DistilBERT with the traced batch baked into
its Reshapes passed `derived::parity`, and a transform result with a batch baked in would be
written by `optimize`. Slicing (or stacking) every input alike keeps equal sizes equal, so the
probe holds wherever every input's first dimension is free and every feed has one size there."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_batch

# Two inputs whose batch dims carry two names, as the dynamo exporter writes them.
MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[s33,3,4] x, float[s6,3,4] m) => (float[s33,12] y) <float w = {{2.0}}{extra}> {{
  p = Mul(x, m)
  f = {flatten}
  y = Mul(f, w)
}}"""
HONEST = MODEL.format(flatten="Flatten<axis = 1>(p)", extra="")
# The traced batch 2 kept: at batch 1 the output is [2, 6], the row cut in two.
BAKED_2 = MODEL.format(flatten="Reshape(p, shape)", extra=", int64[2] shape = {2, -1}")


def _feeds(batch: int, count: int = 2):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(batch, 3, 4)).astype(np.float32),
             "m": rng.uniform(0.5, 1.5, size=(batch, 3, 4)).astype(np.float32)} for _ in range(count)]


def test_inputs_whose_batch_dims_have_two_names_are_probed_alike():
    feeds = _feeds(2)
    probe = other_batch(onnx.parser.parse_model(HONEST), feeds)
    assert probe is not None and probe.size == 1
    rows = [(feed, row) for feed in feeds for row in range(2)][:16]
    for made, (feed, row) in zip(probe.feeds, rows, strict=True):
        for name in ("x", "m"):
            np.testing.assert_array_equal(made[name], feed[name][row:row + 1])


def test_no_probe_where_the_feeds_hold_two_sizes_there():
    feeds = [{"x": f["x"], "m": np.concatenate([f["m"], f["m"][:1]])} for f in _feeds(2)]
    assert other_batch(onnx.parser.parse_model(HONEST), feeds) is None


def _parity(tmp_path, derived: str, original: str):
    model, reference = tmp_path / "derived.onnx", tmp_path / "original.onnx"
    onnx.save(onnx.parser.parse_model(derived), model)
    onnx.save(onnx.parser.parse_model(original), reference)
    inputs = tmp_path / "x.npz"
    feeds = _feeds(2)
    np.savez(inputs, x=np.stack([f["x"] for f in feeds]), m=np.stack([f["m"] for f in feeds]))
    result = api.check(str(model), pytest_args=[f"--reference-model={reference}", f"--inputs={inputs}", "-k", "derived",
                                                "-p", "no:cacheprovider", "-q"])
    return next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]


def test_a_derived_model_with_the_traced_batch_kept_fails_parity_under_two_batch_names(tmp_path):
    parity = _parity(tmp_path, BAKED_2, HONEST)
    assert parity["outcome"] == "failed" and "at batch 1 (each row of the feeds on its own" in parity["message"], parity


def test_an_honest_derived_model_under_two_batch_names_agrees_at_the_other_batch(tmp_path):
    parity = _parity(tmp_path, HONEST, HONEST)
    assert parity["outcome"] == "passed" and "also agrees at batch 1" in parity["figures"]["other_shapes"], parity
