"""plant12's misses that needed "another resolution or sequence length": a derived model with its
Resize fixed to the data's 8x8, or with its position table sliced to the data's 32 tokens, passed
`derived::parity` on data of that size though it declares those dimensions free; a transform result
with the data's spatial size baked into a Reshape was written by `optimize`. Both are now also
compared on the feeds cropped to smaller free dimensions (shape_probe.other_size)."""


import numpy as np
import onnx
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st
from planted_transforms import plant_in_transform
from tiny_models import with_output_through

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_size, size_below

IMAGE = """
<ir_version: 8, opset_import: ["": 18]>
g (float[N,1,H,W] x) => (float[N,1,H,W] y) <float w = {{2.0}}{weights}> {{
  {resize}
  y = Mul(r, w)
}}"""
IMAGE_HONEST = IMAGE.format(weights="", resize="r = Relu(x)")
# The data's 8x8 kept: at 8x8 the nearest Resize is the identity; at any other size it is not.
IMAGE_FIXED_RESIZE = IMAGE.format(weights=", int64[2] hw = {8, 8}",
                                  resize="q = Relu(x)\n  r = Resize<axes = [2, 3], mode = \"nearest\">(q, , , hw)")

SEQUENCE = """
<ir_version: 8, opset_import: ["": 18]>
g (float[N,S,4] x) => (float[N,S,4] y) <float[32,4] table = {table}, int64[1] zero = {{0}}, int64[1] one = {{1}}, int64[1] two = {{2}}{weights}> {{
  {end}
  pos = Slice(table, zero, end)
  y = Add(x, pos)
}}"""
TABLE = "{" + ", ".join(str(v / 7) for v in range(128)) + "}"
SEQUENCE_HONEST = SEQUENCE.format(table=TABLE, weights="", end="shape = Shape(x)\n  end = Slice(shape, one, two)")
# BERT cut to the data's 32 tokens: at 16 tokens the [32, 4] table does not broadcast with x.
SEQUENCE_CUT = SEQUENCE.format(table=TABLE, weights=", int64[1] end = {32}", end="")


def _save(tmp_path, text: str, name: str):
    path = tmp_path / name
    onnx.save(onnx.parser.parse_model(text), path)
    return path


def _parity(tmp_path, derived: str, original: str, data: np.ndarray):
    model, reference = _save(tmp_path, derived, "derived.onnx"), _save(tmp_path, original, "original.onnx")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=data)
    result = api.check(str(model), pytest_args=[f"--reference-model={reference}", f"--inputs={inputs}", "-k", "derived", "-p", "no:cacheprovider", "-q"])
    return next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]


def _images(size: int = 8):
    return np.random.default_rng(0).normal(size=(2, 1, 1, size, size)).astype(np.float32)


def _sequences(length: int = 32):
    return np.random.default_rng(0).normal(size=(2, 1, length, 4)).astype(np.float32)


def test_a_derived_model_with_its_resize_fixed_to_the_data_fails_parity(tmp_path):
    parity = _parity(tmp_path, IMAGE_FIXED_RESIZE, IMAGE_HONEST, _images())
    assert parity["outcome"] == "failed", parity
    assert "smaller free dimensions (H 8 -> 4, W 8 -> 4" in parity["message"], parity


def test_a_derived_model_with_its_positions_cut_to_the_data_fails_parity(tmp_path):
    parity = _parity(tmp_path, SEQUENCE_CUT, SEQUENCE_HONEST, _sequences())
    assert parity["outcome"] == "failed", parity
    assert "the derived model fails at smaller free dimensions (S 32 -> 16" in parity["message"], parity


def test_honest_derived_models_also_agree_at_smaller_free_dimensions(tmp_path):
    for text, data in ((IMAGE_HONEST, _images()), (SEQUENCE_HONEST, _sequences())):
        parity = _parity(tmp_path, text, text, data)
        assert parity["outcome"] == "passed", parity
        assert "also agrees at smaller free dimensions" in parity["figures"]["other_shapes"], parity


def test_an_original_that_fails_at_the_smaller_size_is_not_held_against_the_derived_model(tmp_path):
    parity = _parity(tmp_path, SEQUENCE_CUT, SEQUENCE_CUT, _sequences())
    assert parity["outcome"] == "passed", parity
    assert "not compared at smaller free dimensions" in parity["figures"]["other_shapes"], parity


def test_dimensions_of_one_name_or_one_size_are_cropped_alike():
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["": 18]>
    g (int64[N,S] ids, int64[N,S] mask, float[N,?,3] extra) => (int64[N,S] y) { y = Mul(ids, mask) }""")
    feeds = [{"ids": np.arange(24).reshape(2, 12), "mask": np.ones((2, 12), np.int64), "extra": np.zeros((2, 5, 3), np.float32)}]
    probe = other_size(model, feeds)
    (made,) = probe.feeds
    assert made["ids"].shape == made["mask"].shape == (2, 8)
    assert made["extra"].shape == (2, 4, 3)  # a dim without a name, cropped by its own size
    assert probe.sizes == {"S": (12, 8), "extra[1]": (5, 4)}
    np.testing.assert_array_equal(made["ids"], feeds[0]["ids"][:, :8])


@given(lengths=st.lists(st.integers(2, 40), min_size=1, max_size=20))
def test_the_probe_crops_every_feed_up_to_sixteen_each_to_its_own_smaller_size(lengths):
    """Several rows, as the data has: a quantized BERT's lone cropped row of 3 logits failed the int8
    floor on its varying part (9.5 dB) where its 16 cropped rows read 30.7 dB."""
    model = onnx.parser.parse_model(SEQUENCE_HONEST)
    feeds = [{"x": np.arange(n * 4, dtype=np.float32).reshape(1, n, 4)} for n in lengths]
    probe = other_size(model, feeds)
    assert len(probe.feeds) == min(len(feeds), 16)
    for made, feed in zip(probe.feeds, feeds):
        length = feed["x"].shape[1]
        np.testing.assert_array_equal(made["x"], feed["x"][:, :size_below(length)])


def test_no_size_probe_where_nothing_after_the_batch_is_free_or_everything_free_is_one():
    fixed = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 18]>
    g (float[N,3,8] x) => (float[N,3,8] y) { y = Relu(x) }""")
    assert other_size(fixed, [{"x": np.zeros((2, 3, 8), np.float32)}]) is None
    free_one = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 18]>
    g (float[N,S] x) => (float[N,S] y) { y = Relu(x) }""")
    assert other_size(free_one, [{"x": np.zeros((2, 1), np.float32)}]) is None


@given(size=st.integers(2, 4096))
def test_a_smaller_size_keeps_the_factors_of_two_a_downsampling_net_needs(size):
    smaller = size_below(size)
    assert size / 2 <= smaller < size
    for power in (2, 4, 8, 16, 32):
        if size % power == 0 and size >= 2 * power:  # a net that downsamples by `power` ran at `size`
            assert smaller % power == 0, (size, smaller, power)


CONV_BN = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,2,H,W] x) => (float[N,2,H,W] y)
  <float[2,2,1,1] w = {0.5, -1.0, 0.25, 2.0}, float[2] s = {1.5, 0.5}, float[2] b = {0.1, -0.2},
   float[2] m = {0.3, -0.1}, float[2] v = {2.0, 0.5}> {
  c = Conv(x, w)
  y = BatchNormalization(c, s, b, m, v)
}"""


def _bake_the_data_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """A Reshape to the data's 4x4 at the end: the identity there, an error at any other size."""
    return with_output_through(model, "Reshape", {"four_by_four": np.array([-1, 2, 4, 4], np.int64)})



def _optimize(tmp_path, monkeypatch, *, bake: bool):
    model = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(CONV_BN), model)
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(2, 1, 2, 4, 4)).astype(np.float32))
    if bake:
        plant_in_transform(monkeypatch, "fold_conv_bn", _bake_the_data_size)
    return api.optimize(str(model), output=tmp_path / "o.onnx", inputs=str(data), passes=["fold_conv_bn"])


def test_a_transform_result_with_the_data_size_baked_in_is_not_written(tmp_path, monkeypatch):
    result = _optimize(tmp_path, monkeypatch, bake=True)
    assert not result.passed and result.pipeline.failed_step == "fold_conv_bn"
    assert result.written is None and not (tmp_path / "o.onnx").exists()


def test_the_honest_fold_is_written_and_says_it_was_verified_at_smaller_dimensions(tmp_path, monkeypatch):
    result = _optimize(tmp_path, monkeypatch, bake=False)
    assert result.passed and result.written is not None
    assert "also verified at smaller free dimensions (H 4 -> 2, W 4 -> 2" in result.other_shapes, result.other_shapes
