"""plant12: a derived model that keeps the traced batch in a Reshape passed derived::parity on data
of that batch, though it declares its batch free; a transform result with a batch baked in was
written by `optimize`. Both are now also compared at a second batch size (shape_probe.py)."""

import numpy as np
import onnx
import onnx.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_batch

MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[{batch},3,4] x) => (float[{batch},12] y) <float w = {{2.0}}> {{
  f = {flatten}
  y = Mul(f, w)
}}"""
HONEST = MODEL.format(batch="N", flatten="Flatten<axis = 1>(x)")
# The traced batch 2 kept: at batch 1 the output is [2, 6], the row cut in two.
BAKED_2 = MODEL.format(batch="N", flatten="Reshape(x, shape)").replace("<float w", "<int64[2] shape = {2, -1}, float w")
FIXED = MODEL.format(batch="2", flatten="Flatten<axis = 1>(x)")
# The same, times a [12] weight: at batch 1 the [2, 6] product does not broadcast, and the run fails.
BAKED_2_FAILS = BAKED_2.replace("float w = {2.0}", "float[12] w = {1,2,3,4,5,6,7,8,9,10,11,12}")


def _save(tmp_path, text: str, name: str):
    path = tmp_path / name
    onnx.save(onnx.parser.parse_model(text), path)
    return path


def _feeds(batch: int, count: int = 2):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(batch, 3, 4)).astype(np.float32)} for _ in range(count)]


def test_a_batch_of_two_gives_each_row_of_the_feeds_on_its_own():
    feeds = _feeds(2)
    probe = other_batch(onnx.parser.parse_model(HONEST), feeds)
    rows = [feed["x"][row:row + 1] for feed in feeds for row in range(2)][:16]
    assert probe.size == 1 and probe.data_size == 2 and len(probe.feeds) == len(rows)
    for made, row in zip(probe.feeds, rows, strict=True):
        np.testing.assert_array_equal(made["x"], row)


def test_feeds_of_batch_one_are_stacked_in_pairs():
    feeds = _feeds(1, count=5)
    probe = other_batch(onnx.parser.parse_model(HONEST), feeds)
    assert probe.size == 2 and len(probe.feeds) == 2  # the fifth feed has no partner
    for index, made in enumerate(probe.feeds):
        np.testing.assert_array_equal(made["x"], np.concatenate([feeds[2 * index]["x"], feeds[2 * index + 1]["x"]]))


def test_a_single_feed_of_batch_one_is_stacked_with_itself():
    feeds = _feeds(1, count=1)
    probe = other_batch(onnx.parser.parse_model(HONEST), feeds)
    assert probe.size == 2 and probe.repeated and "the only feed twice" in probe.describe()
    (made,) = probe.feeds
    np.testing.assert_array_equal(made["x"], np.concatenate([feeds[0]["x"]] * 2))


def test_no_probe_without_a_free_batch():
    assert other_batch(onnx.parser.parse_model(FIXED), _feeds(2)) is None
    # two names for the batch are probed alike (zoo13: the dynamo exporter's per-input symbols):
    # tests/test_zoo13_batch_names.py


@given(batch=st.integers(1, 5), count=st.integers(1, 3))
def test_the_probe_is_always_another_size_made_of_the_data(batch, count):
    feeds = _feeds(batch, count)
    probe = other_batch(onnx.parser.parse_model(HONEST), feeds)
    assert probe.size != batch and probe.feeds
    rows = np.concatenate([f["x"] for f in feeds])
    for made in probe.feeds:
        assert made["x"].shape == (probe.size, 3, 4)
        assert all(any(np.array_equal(row, data) for data in rows) for row in made["x"])


def _parity(tmp_path, derived: str, original: str, batch: int):
    model, reference = _save(tmp_path, derived, "derived.onnx"), _save(tmp_path, original, "original.onnx")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.stack([f["x"] for f in _feeds(batch)]))
    result = api.check(str(model), pytest_args=[f"--reference-model={reference}", f"--inputs={inputs}", "-k", "derived", "-p", "no:cacheprovider", "-q"])
    return next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]


@pytest.mark.parametrize("batch", [1, 2])
def test_a_derived_model_with_the_traced_batch_kept_fails_parity(tmp_path, batch):
    parity = _parity(tmp_path, BAKED_2, HONEST, batch)
    if batch == 2:  # the data's batch is the traced one: only the probe at batch 1 shows it
        assert parity["outcome"] == "failed" and "at batch 1 (each row of the feeds on its own" in parity["message"], parity
    else:  # batch 1 data: the model itself is wrong there already
        assert parity["outcome"] == "failed", parity


def test_an_honest_derived_model_also_agrees_at_the_other_batch(tmp_path):
    parity = _parity(tmp_path, HONEST, HONEST, 2)
    assert parity["outcome"] == "passed" and "also agrees at batch 1" in parity["figures"]["other_shapes"], parity


def test_an_original_that_fails_at_the_other_batch_is_not_held_against_the_derived_model(tmp_path):
    parity = _parity(tmp_path, BAKED_2_FAILS, BAKED_2_FAILS, 2)
    assert parity["outcome"] == "passed", parity
    assert "not compared at batch 1" in parity["figures"]["other_shapes"], parity
