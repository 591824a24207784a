"""Red-team finding on input data (data.py): a narrowing cast that changed values let the checks run,
and pass, on data the user never gave (int64 2**40 wrapped to 0 in an int32 input; 1e6 became inf
in a float16 one)."""

import re

import numpy as np
import onnx
import pytest

from onnx2trt_check import api
from onnx2trt_check.errors import CheckError
from onnx2trt_check.input_conversions import _kept


def _model(tmp_path, onnx_type: str):
    model = onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g ({onnx_type}[1,4] x) => (float[1,4] z) {{ z = Cast<to=1>(x) }}""")
    onnx.save(model, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("onnx_type, values", [
    ("int32", np.array([[2**40, 1, 2, 3]], np.int64)),
    ("int8", np.array([[200, 1, 2, 3]], np.int16)),
    ("float16", np.array([[1e6, 1, 2, 3]], np.float32)),
    # Red team 19: unsigned data for a signed input of one width wrapped to negative values, the note
    # saying "every value kept" (data.fit's round trip, int8 -56 -> uint8 200, cannot see such a wrap).
    ("int8", np.array([[200, 1, 2, 3]], np.uint8)),
    ("int16", np.array([[40000, 1, 2, 3]], np.uint16)),
    ("int32", np.array([[2**31 + 7, 1, 2, 3]], np.uint32)),
    ("int64", np.array([[2**63 + 5, 1, 2, 3]], np.uint64)),
])
def test_data_the_input_type_cannot_hold_is_refused(tmp_path, onnx_type, values):
    np.savez(tmp_path / "d.npz", x=values)
    with pytest.raises(CheckError, match=f"holds {values.flat[0]}.*{onnx_type.upper()} cannot hold"):
        api.optimize(_model(tmp_path, onnx_type), inputs=tmp_path / "d.npz")


@pytest.mark.parametrize("onnx_type, values", [
    ("int32", np.array([[-2**31, 1, 2, 2**31 - 1]], np.int64)),
    ("float16", np.array([[65504.0, -1.5, -65504.0, 3]], np.float32)),  # the extremes fit (an inf given is refused: test_red_team6_nonfinite_inputs)
    ("float", np.array([[0.1, 1e30, 2, 3]], np.float64)),
])
def test_data_that_fits_the_input_type_is_taken(tmp_path, onnx_type, values):
    np.savez(tmp_path / "d.npz", x=values)
    api.optimize(_model(tmp_path, onnx_type), inputs=tmp_path / "d.npz")


def test_generated_integer_inputs_say_they_were_drawn_from_the_default_range():
    # A BERT-like input_ids checked on random data sees ids 0 and 1 only; the pass said nothing of it.
    from onnx2trt_check.data import FeedOptions, default_range_notes, model_feeds

    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (int64[1,4] ids, float[1,4] x, int64[1,4] mask) => (float[1,4] z) { c = Cast<to=1>(ids)\n z = Add(c, x) }""")
    specs, _ = model_feeds(model, FeedOptions())
    notes = default_range_notes(specs, FeedOptions())
    assert len(notes) == 2 and "input 'ids': integer values drawn from 0..1" in notes[0] and "'mask'" in notes[1]
    assert len(default_range_notes(specs, FeedOptions(ranges={"ids": (1.0, 999.0)}))) == 1
    assert default_range_notes(specs, FeedOptions(ranges={"*": (0.0, 9.0)})) == []


BUFFER_LOADER = """
import re

import numpy as np
BUFFER = np.zeros((1, 4), np.float32)
def load_data():
    for i in range(3):
        BUFFER[...] = i  # one buffer refilled per feed, as preallocated loaders do
        yield {"x": BUFFER}
def reference(feed):
    BUFFER[...] = feed["x"] * 2
    return BUFFER
"""


def test_a_loader_or_reference_script_that_reuses_its_buffer_keeps_every_feed(tmp_path):
    from onnx2trt_check.data import FeedOptions, model_feeds
    from onnx2trt_check.references import ReferenceScript

    (tmp_path / "loader.py").write_text(BUFFER_LOADER)
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] z) { z = Relu(x) }""")
    _, feeds = model_feeds(model, FeedOptions(data_loader=str(tmp_path / "loader.py")))
    assert [float(f["x"][0, 0]) for f in feeds] == [0.0, 1.0, 2.0]  # was [2.0, 2.0, 2.0]
    _, outputs = ReferenceScript(f"{tmp_path / 'loader.py'}:reference").run(model, tmp_path / "m.onnx", feeds)
    assert [float(o["z"][0, 0]) for o in outputs] == [0.0, 2.0, 4.0]


def test_generated_uint8_inputs_are_pixels_not_a_black_image():
    # Drawn from the default 0..1, a uint8 image input was 0s and 1s: a black image every check passed on.
    from onnx2trt_check.data import FeedOptions, default_range_notes, model_feeds

    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (uint8[1,3,8,8] image, int64[1,4] ids) => (float[1,3,8,8] z) { z = Cast<to=1>(image) }""")
    specs, feeds = model_feeds(model, FeedOptions(num_feeds=4))
    pixels = np.concatenate([f["image"].ravel() for f in feeds])
    assert pixels.min() < 20 and pixels.max() > 235 and len(np.unique(pixels)) > 200
    assert set(np.unique(np.concatenate([f["ids"].ravel() for f in feeds]))) <= {0, 1}  # other integers keep 0..1
    notes = default_range_notes(specs, FeedOptions())
    assert "input 'image': integer values drawn from 0..255 (the default range of a uint8 input: pixels)" in notes[0]
    _, chosen = model_feeds(model, FeedOptions(ranges={"image": (0.0, 1.0)}))
    assert set(np.unique(chosen[0]["image"])) <= {0, 1}  # --input-range still decides


@pytest.mark.parametrize("onnx_type, high, largest", [("float", 1e308, "3.40282e+38"), ("float16", 1e5, "65504")])
def test_a_generated_range_beyond_the_input_type_is_refused(onnx_type, high, largest):
    # --input-range x:0,1e308 on a float32 input drew inf inputs, and the checks ran on them.
    from onnx2trt_check.data import FeedOptions, model_feeds

    model = _model_proto(onnx_type)
    with pytest.raises(CheckError, match=re.escape(f"exceeds its type {onnx_type.upper()} (largest finite value {largest})")):
        model_feeds(model, FeedOptions(ranges={"x": (0.0, high)}))
    assert np.isfinite(model_feeds(model, FeedOptions(ranges={"x": (0.0, 1e4)}))[1][0]["x"]).all()


def _model_proto(onnx_type: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        g ({onnx_type}[1,4] x) => (float[1,4] z) {{ z = Cast<to=1>(x) }}""")


def test_unsigned_data_within_the_signed_input_is_taken(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([[127, 0, 2, 3]], np.uint8))
    api.optimize(_model(tmp_path, "int8"), inputs=tmp_path / "d.npz")


def test_the_conversion_note_says_a_wrapped_value_was_not_kept():
    assert not _kept(np.array([200], np.uint8), np.int8)
    assert _kept(np.array([100], np.uint8), np.int8)
