"""review17: a Concat part of a free size took the size every feed gives the graph input's dimension
(hunt18), so where the feeds gave a KV cache's past two lengths (decoding steps 15 and 16) the output
had no parts, and a new key halved passed int8 at 26 dB (its part 6 dB). One free part now takes what
the others leave of each feed's output."""

import numpy as np
import onnx

from onnx2trt_check import api
from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import Segments, output_layouts

CACHE = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
g (float[1,P,64] past, float[1,1,64] x) => (float[1,Q,64] present) {
  w = Constant<value_float = 2.0>()
  k = Mul(x, w)
  present = Concat<axis = 1>(past, k)
}""")


def _run(scale: float):
    rng = np.random.default_rng(0)
    feeds = [{"past": 5 * rng.normal(size=(1, p, 64)).astype(np.float32), "x": rng.normal(size=(1, 1, 64)).astype(np.float32)}
             for p in (15, 15, 16, 16)]
    reference = [np.concatenate([f["past"], 2 * f["x"]], axis=1) for f in feeds]
    target = [np.concatenate([f["past"], scale * 2 * f["x"]], axis=1) for f in feeds]
    layout = output_layouts(CACHE, feeds)["present"]
    return layout, compare_output("present", reference, target, PRECISION_PROFILES["int8"], layout)


def test_a_halved_new_key_fails_where_the_past_lengths_differ():
    layout, stats = _run(0.5)
    assert layout.segments == Segments(1, (("past", None), ("k", 1)))
    assert not stats.passed and stats.part_sqnr_db["k"] < 10


def test_an_exact_cache_passes():
    assert _run(1.0)[1].passed


def _cache_at_sizes(fault_scale: float) -> onnx.ModelProto:
    """present = Concat(past, x @ w) along 1, past P and new S free, with a Q/DQ pair on x (an int8
    model); the new key times `fault_scale` wherever S is not the data's 4: a fault only the size probe sees."""
    return onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[1,P,8] past, float[1,S,8] x) => (float[1,Q,8] present) {{
  s = Constant<value_float = 0.001>()
  z = Constant<value = int8 {{0}}>()
  xq = QuantizeLinear(x, s, z)
  xd = DequantizeLinear(xq, s, z)
  w = Constant<value = float[8,8] {{{", ".join(str(float(v)) for v in np.eye(8).ravel())}}}>()
  new = MatMul(xd, w)
  size = Shape<start = 1, end = 2>(x)
  four = Constant<value = int64[1] {{4}}>()
  same = Equal(size, four)
  one = Constant<value_float = 1.0>()
  fault = Constant<value_float = {fault_scale}>()
  factor = Where(same, one, fault)
  scaled = Mul(new, factor)
  present = Concat<axis = 1>(past, scaled)
}}""")


def test_the_size_probe_cuts_parts_at_its_own_sizes(tmp_path):
    """With the data's layout (new: the last 4 positions) the probe at S = 2 judged two past positions
    beside the two halved new ones, and the past's scale carried them; the probe's own layout cuts at 2."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", past=30 * rng.normal(size=(6, 1, 13, 8)).astype(np.float32), x=rng.normal(size=(6, 1, 4, 8)).astype(np.float32))
    onnx.save(_cache_at_sizes(1.0), tmp_path / "original.onnx")
    for scale, outcome in ((0.5, "failed"), (1.0, "passed")):
        onnx.save(_cache_at_sizes(scale), tmp_path / "int8.onnx")
        result = api.check(str(tmp_path / "int8.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'data.npz'}",
                                                                     "-k", "derived and parity", "-p", "no:cacheprovider", "-q"])
        parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
        assert parity["outcome"] == outcome, (scale, parity.get("message"))
        assert scale == 1.0 or ("smaller free dimensions" in parity["message"] and "SQNR of the part 'scaled'" in parity["message"])
