"""review16: the grown probe appended each feed's leading part, so a right-padded attention mask
(1 x 19, 0 x 13) grew into one with a hole (1 x 19, 0 x 13, 1 x 16), which no tokenizer makes. A
derived model that reads the mask as lengths (Range(S) < ReduceSum(mask), as TensorRT's BERT plugins
take sequence lengths) computes the same function on every padded mask, yet failed derived::parity
at 32 -> 48 tokens (zoo bert_ts.onnx with that mask: SQNR 17 dB, top-1 93.75%, max abs 0 on the
data). The feeds now grow by their last position repeated: padding stays padding, a left-padded or
full sequence keeps its mask of ones, an image its edge pixels."""

from __future__ import annotations

import numpy as np
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_size, size_above

BODY = """
<ir_version: 8, opset_import: ["": 18]>
g (float[N,S] x, int64[N,S] mask) => (float[N,1] y) <int64[1] axes = {{1}}, int64 zero = {{0}}, int64 one = {{1}}> {{
  {mask}
  f = Cast<to = 1>(m)
  w = Mul(x, f)
  y = ReduceSum(w, axes)
}}"""
ORIGINAL = BODY.format(mask="m = Identity(mask)")
BY_LENGTH = BODY.format(mask="""n = ReduceSum(mask, axes)
  shape = Shape(mask)
  s = Gather<axis = 0>(shape, one)
  pos = Range(zero, s, one)
  m = Less(pos, n)""")


def _right_padded(lengths, size=32):
    x = np.random.default_rng(0).normal(size=(len(lengths), 1, size)).astype(np.float32)
    mask = np.stack([(np.arange(size) < n)[None] for n in lengths]).astype(np.int64)
    return x, mask


def test_a_length_based_mask_agrees_at_every_probe_on_right_padded_data(tmp_path):
    onnx.save(onnx.parser.parse_model(ORIGINAL), tmp_path / "original.onnx")
    onnx.save(onnx.parser.parse_model(BY_LENGTH), tmp_path / "derived.onnx")
    x, mask = _right_padded([19, 18, 27, 17])
    np.savez(tmp_path / "data.npz", x=x, mask=mask)
    result = api.check(str(tmp_path / "derived.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'data.npz'}",
                                                                     "-k", "derived and parity", "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == "passed", parity.get("message")
    assert "also agrees at larger free dimensions (S 32 -> 48" in parity["figures"]["other_shapes"], parity["figures"]


@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=6), left=st.booleans())
def test_a_grown_mask_stays_padded_on_one_side(lengths, left):
    model = onnx.parser.parse_model(ORIGINAL)
    x, mask = _right_padded(lengths, 12)
    mask = mask[..., ::-1] if left else mask
    probe = other_size(model, [{"x": a, "mask": m} for a, m in zip(x, mask)], grow=True)
    for made, m in zip(probe.feeds, mask):
        grown = made["mask"][0]
        assert grown.shape == (size_above(12),) and np.array_equal(grown[:12], m[0])
        runs = np.count_nonzero(np.diff(grown)) if grown.size else 0
        assert runs <= 1, grown  # ones then zeros, or zeros then ones: no hole
