"""review14: README says derived::parity catches "a BERT whose position embeddings were cut to the
data's 32 tokens". The test of it (test_size_probe) cuts with a Slice to a constant 32, which fails to
broadcast at 16 tokens. A BERT export reads its positions with Gather(table, Range(0, S)): a table cut
to 32 rows still serves every smaller length, so the cropped probe (16 tokens) agreed and the derived
model passed, though it fails at any length from 33 to the original's 64 (a strict xfail here).

Now shape_probe also tries a larger free size, by the step size_below removes (224 -> 256, 32 tokens
-> 48), the feeds extended along that dimension by their last position repeated (real tokens or
pixels, no invented values; review16: not their leading part, which made holes in padded masks),
the original's own run deciding whether the size is free: a table exactly at the data's length in
both models is "not compared" there, never a failure."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st
from planted_transforms import plant_in_transform
from tiny_models import with_output_through

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_size, size_above, size_below

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

# An image model, and one that keeps the data's 8x8 by a Slice: the identity at 8x8 and below, a
# cut at any larger size (a fixed crop, or a ViT's position grid sliced to the data's patches).
IMAGE = """
<ir_version: 8, opset_import: ["": 18]>
g (float[N,1,H,W] x) => (float[N,1,H,W] y) <float w = {{2.0}}{weights}> {{
  r = Relu(x)
  {cut}
}}"""
IMAGE_HONEST = IMAGE.format(weights="", cut="y = Mul(r, w)")
IMAGE_SLICED = IMAGE.format(weights=", int64[2] zeros = {0, 0}, int64[2] ends = {8, 8}, int64[2] hw = {2, 3}",
                            cut="m = Mul(r, w)\n  y = Slice(m, zeros, ends, hw)")


def _model(rows: int) -> onnx.ModelProto:
    return onnx.parser.parse_model(GATHERED.format(rows=rows, values=", ".join(str(v / 7) for v in range(rows * 4))))


def _parity(tmp_path, derived: onnx.ModelProto, original: onnx.ModelProto, data: np.ndarray) -> dict:
    onnx.save(original, tmp_path / "original.onnx")
    onnx.save(derived, tmp_path / "derived.onnx")
    np.savez(tmp_path / "x.npz", x=data)
    result = api.check(str(tmp_path / "derived.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'x.npz'}",
                                                                     "-k", "derived and parity", "-p", "no:cacheprovider", "-q"])
    return next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]


def _tokens():
    return np.random.default_rng(0).normal(size=(2, 1, 32, 4)).astype(np.float32)


def _images():
    return np.random.default_rng(0).normal(size=(2, 1, 1, 8, 8)).astype(np.float32)


def test_a_position_table_cut_to_the_data_fails_parity(tmp_path):
    parity = _parity(tmp_path, _model(32), _model(64), _tokens())
    assert parity["outcome"] == "failed", parity["figures"].get("summary")
    assert "the derived model fails at larger free dimensions (S 32 -> 48" in parity["message"], parity["message"]


def test_a_table_at_the_data_length_in_both_models_is_not_compared_at_the_larger_size(tmp_path):
    """A BERT at its maximum length: the original refuses 48 tokens too, so that size is named as not
    compared, the smaller one as agreeing, and the derived model passes."""
    parity = _parity(tmp_path, _model(32), _model(32), _tokens())
    assert parity["outcome"] == "passed", parity
    shapes = parity["figures"]["other_shapes"]
    assert "also agrees at smaller free dimensions (S 32 -> 16" in shapes, shapes
    assert "not compared at larger free dimensions (S 32 -> 48" in shapes and "original model 'original.onnx' fails there" in shapes, shapes


def test_an_honest_derived_model_names_every_size_it_agrees_at(tmp_path):
    parity = _parity(tmp_path, _model(64), _model(64), _tokens())
    assert parity["outcome"] == "passed", parity
    shapes = parity["figures"]["other_shapes"]
    assert "also agrees at batch 2" in shapes and "smaller free dimensions (S 32 -> 16" in shapes, shapes
    assert "also agrees at larger free dimensions (S 32 -> 48; the feeds extended by their last position repeated" in shapes, shapes


def test_an_image_model_sliced_to_the_data_resolution_fails_parity(tmp_path):
    """The Slice serves every smaller image (the cropped probe agrees), and cuts a larger one."""
    parity = _parity(tmp_path, onnx.parser.parse_model(IMAGE_SLICED), onnx.parser.parse_model(IMAGE_HONEST), _images())
    assert parity["outcome"] == "failed", parity
    assert "at larger free dimensions (H 8 -> 12, W 8 -> 12" in parity["message"], parity["message"]


@given(lengths=st.lists(st.integers(2, 40), min_size=1, max_size=20), width=st.integers(2, 9))
def test_the_grown_probe_extends_every_feed_by_its_last_position(lengths, width):
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 18]>
    g (int64[N,S] ids, int64[N,S] mask, float[N,?,3] extra) => (int64[N,S] y) { y = Mul(ids, mask) }""")
    feeds = [{"ids": np.arange(n, dtype=np.int64)[None] * 3 % 11 + 7, "mask": np.ones((1, n), np.int64),
              "extra": np.arange(width * 3, dtype=np.float32).reshape(1, width, 3)} for n in lengths]
    probe = other_size(model, feeds, grow=True)
    assert len(probe.feeds) == min(len(feeds), 16) and probe.grown
    assert probe.sizes == {"S": (lengths[0], size_above(lengths[0])), "extra[1]": (width, size_above(width))}
    for made, feed in zip(probe.feeds, feeds):
        n = feed["ids"].shape[1]
        assert made["ids"].shape == made["mask"].shape == (1, size_above(n))  # equal sizes grown alike
        np.testing.assert_array_equal(made["ids"], np.concatenate([feed["ids"], np.repeat(feed["ids"][:, -1:], n - size_below(n), axis=1)], axis=1))
        np.testing.assert_array_equal(made["extra"][:, :width], feed["extra"])


@given(size=st.integers(2, 4096))
def test_a_larger_size_grows_by_the_step_a_smaller_one_takes_off_and_keeps_its_factors_of_two(size):
    """The step size_below takes off, capped at a quarter of a large size (left16: 1024 grew to 1536,
    2.25x the pixels of the data's run, 16 feeds of them) but never below the factors of two up to
    32 a downsampling net needs."""
    step = size_above(size) - size
    assert 1 <= step <= size - size_below(size) and step & (step - 1) == 0 and size % step == 0
    assert step <= max(size // 4, min(size - size_below(size), 32))
    for power in (2, 4, 8, 16, 32):
        if size % power == 0 and size >= 2 * power:
            assert size_above(size) % power == 0, (size, power)


def test_a_large_size_grows_by_a_quarter_a_small_one_as_before():
    assert [size_above(n) for n in (1024, 512, 128, 2048)] == [1280, 640, 160, 2560]  # were 1536, 768, 192, 3072
    assert [size_above(n) for n in (224, 96, 64, 32, 9, 2)] == [256, 128, 96, 48, 10, 3]  # README's sizes, unchanged


CONV_BN = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,2,H,W] x) => (float[N,2,H,W] y)
  <float[2,2,1,1] w = {{0.5, -1.0, 0.25, 2.0}}, float[2] s = {{1.5, 0.5}}, float[2] b = {{0.1, -0.2}},
   float[2] m = {{0.3, -0.1}}, float[2] v = {{2.0, 0.5}}{weights}> {{
  c = Conv(x, w)
  {tail}
}}"""
# The original itself serves only sizes up to the data's 4x4: a grid of 4x4 added, sliced to H, W.
CONV_BN_AT_MOST_FOUR = CONV_BN.format(
    weights=", float[1,1,4,4] grid = {" + ", ".join(str(v / 16) for v in range(16)) + "}, int64[2] zeros = {0, 0}, int64[1] i2 = {2}, int64[1] i4 = {4}",
    tail="n = BatchNormalization(c, s, b, m, v)\n  shape = Shape(n)\n  hw = Slice(shape, i2, i4)\n"
         "  axes = Constant<value = int64[2] {2, 3}>()\n  pos = Slice(grid, zeros, hw, axes)\n  y = Add(n, pos)")


def _slice_to_the_data_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """A Slice of the output to the data's 4x4 at the end: the identity at 4x4 and below."""
    return with_output_through(model, "Slice", {"zeros_": np.array([0, 0], np.int64), "fours_": np.array([4, 4], np.int64), "hw_": np.array([2, 3], np.int64)})



def _optimize(tmp_path, text: str):
    model, data = tmp_path / "m.onnx", tmp_path / "x.npz"
    onnx.save(onnx.parser.parse_model(text), model)
    np.savez(data, x=np.random.default_rng(0).normal(size=(2, 1, 2, 4, 4)).astype(np.float32))
    return api.optimize(str(model), output=tmp_path / "o.onnx", inputs=str(data), passes=["fold_conv_bn"])


def test_a_transform_result_sliced_to_the_data_size_is_not_written_nor_passed_by_pytest(tmp_path, monkeypatch):
    plant_in_transform(monkeypatch, "fold_conv_bn", _slice_to_the_data_size)
    result = _optimize(tmp_path, CONV_BN.format(weights="", tail="y = BatchNormalization(c, s, b, m, v)"))
    assert not result.passed and result.pipeline.failed_step == "fold_conv_bn", result.pipeline.steps
    assert result.written is None and not (tmp_path / "o.onnx").exists()
    assert "also verified at larger free dimensions (H 4 -> 6, W 4 -> 6" in result.other_shapes, result.other_shapes
    check = api.check(str(tmp_path / "m.onnx"), pytest_args=[f"--inputs={tmp_path / 'x.npz'}", "-k", "transform and fold_conv_bn", "-p", "no:cacheprovider", "-q"])
    step = next(iter(check.report["models"].values()))["families"]["transform[fold_conv_bn]"]["checks"]["equivalence"]
    assert step["outcome"] == "failed", step


def test_a_step_failing_at_a_probe_size_names_that_size(tmp_path, monkeypatch):
    """The failed item's figures and message name the other shapes, and its shape error the probe's
    feed (it named the data's first feed: 'shape (1, 2, 4, 4) instead of (1, 2, 4, 4)')."""
    plant_in_transform(monkeypatch, "fold_conv_bn", _slice_to_the_data_size)
    _optimize(tmp_path, CONV_BN.format(weights="", tail="y = BatchNormalization(c, s, b, m, v)"))
    check = api.check(str(tmp_path / "m.onnx"), pytest_args=[f"--inputs={tmp_path / 'x.npz'}", "-k", "transform", "-p", "no:cacheprovider", "-q"])
    families = next(iter(check.report["models"].values()))["families"]
    for step in (families["transform[fold_conv_bn]"]["checks"]["equivalence"], families["transform[pipeline]"]["checks"]["equivalence"]):
        assert step["outcome"] == "failed", step
        assert "larger free dimensions (H 4 -> 6, W 4 -> 6" in step["figures"]["other_shapes"], step["figures"]
        assert "shape (1, 2, 4, 4) instead of (1, 2, 6, 6) on feed 6 of 7" in step["message"], step["message"]
        assert "other shapes: also verified at batch 2" in step["message"], step["message"]


def test_a_model_that_refuses_the_larger_size_itself_is_written_and_says_so(tmp_path):
    result = _optimize(tmp_path, CONV_BN_AT_MOST_FOUR)
    assert result.passed and result.written is not None, result.pipeline.steps
    assert "also verified at smaller free dimensions (H 4 -> 2, W 4 -> 2" in result.other_shapes, result.other_shapes
    assert "not verified at larger free dimensions (H 4 -> 6, W 4 -> 6" in result.other_shapes, result.other_shapes
    assert "the model itself fails there" in result.other_shapes.split("larger")[1], result.other_shapes
