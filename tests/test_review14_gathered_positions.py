"""review14 (open, strict xfail): README says derived::parity catches "a BERT whose position embeddings
were cut to the data's 32 tokens". The test of it (test_size_probe) cuts with a Slice to a constant 32,
which fails to broadcast at 16 tokens. A BERT export reads its positions with Gather(table, Range(0, S)):
a table cut to 32 rows still serves every smaller length, so the cropped probe (16 tokens) agrees and
the derived model passes, though it fails at any length from 33 to the original's 64.

Proposed fix: shape_probe also tries a larger free size, by the step size_below removes (224 -> 256,
32 tokens -> 48: a modest growth, since doubling a SAM-sized image quadruples its attention memory),
the feeds extended along that dimension with their own leading part (np.concatenate([a, a[:step]],
axis): real tokens or pixels, no invented values), the original's own run deciding as now whether the
size is free (a BERT at its 512 maximum: "not compared", as a cropped size the original refuses)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from onnx2trt_check import api

GATHERED = """
<ir_version: 8, opset_import: ["": 18]>
g (float[N,S,4] x) => (float[N,S,4] y) <float[{rows},4] table = {{{values}}}, int64 zero = {{0}}, int64 one = {{1}}, int64[1] i1 = {{1}}, int64[1] i2 = {{2}}> {{
  shape = Shape(x)
  s1 = Slice(shape, i1, i2)
  s = Squeeze(s1)
  ids = Range(zero, s, one)
  pos = Gather(table, ids)
  y = Add(x, pos)
}}"""


def _model(rows: int) -> onnx.ModelProto:
    return onnx.parser.parse_model(GATHERED.format(rows=rows, values=", ".join(str(v / 7) for v in range(rows * 4))))


@pytest.mark.xfail(strict=True, reason="review14: the probe only crops; a table cut to the data's length serves every smaller one")
def test_a_position_table_cut_to_the_data_fails_parity(tmp_path):
    onnx.save(_model(64), tmp_path / "original.onnx")
    onnx.save(_model(32), tmp_path / "derived.onnx")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(2, 1, 32, 4)).astype(np.float32))
    result = api.check(str(tmp_path / "derived.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'x.npz'}",
                                                                     "-k", "derived and parity", "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == "failed", parity["figures"].get("summary")
