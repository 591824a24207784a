"""Red team 19: unsigned data for a signed input of the same width (uint8 pixels 200 for an int8
input, uint64 ids above 2**63 for an int64 one) wrapped to negative values and was fed, the note
saying "every value kept": data.fit's round-trip check (int8 -56 -> uint8 200) cannot see a wrap
between types of one width. It is now refused, as int64 2**40 for an int32 input is."""

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
    ("int8", np.array([[200, 1, 2, 3]], np.uint8)),
    ("int16", np.array([[40000, 1, 2, 3]], np.uint16)),
    ("int32", np.array([[2**31 + 7, 1, 2, 3]], np.uint32)),
    ("int64", np.array([[2**63 + 5, 1, 2, 3]], np.uint64)),
])
def test_unsigned_data_beyond_the_signed_input_is_refused(tmp_path, onnx_type, values):
    np.savez(tmp_path / "d.npz", x=values)
    with pytest.raises(CheckError, match=f"holds {values.flat[0]}.*{onnx_type.upper()} cannot hold \\(1 such value"):
        api.optimize(_model(tmp_path, onnx_type), inputs=tmp_path / "d.npz")


def test_unsigned_data_within_the_signed_input_is_taken(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([[127, 0, 2, 3]], np.uint8))
    api.optimize(_model(tmp_path, "int8"), inputs=tmp_path / "d.npz")


def test_the_conversion_note_says_a_wrapped_value_was_not_kept():
    assert not _kept(np.array([200], np.uint8), np.int8)
    assert _kept(np.array([100], np.uint8), np.int8)
