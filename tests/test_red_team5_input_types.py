"""Red team 5: input data of another type than the model's input was cast without a word. uint8
pixels 0..255 given to a float input that expects 0..1 (the normalization forgotten) passed every
check with exit 0, and neither the summary nor the JSON report said the data had been converted
(input_conversions.py). The cast still happens; the notes say what it did."""

import json

import numpy as np
from tiny_models import classifier, save, two_inputs


def _run(pytester, model, **arrays):
    np.savez(pytester.path / "x.npz", **arrays)
    result = pytester.runpytest_inprocess("--model", str(model), "--inputs", "x.npz", "--target", "ort", "--report-json", "r.json")
    assert result.ret == 0, result.outlines
    notes = next(iter(json.loads((pytester.path / "r.json").read_text())["models"].values()))["notes"]
    return "\n".join(result.outlines), notes


def test_uint8_pixels_for_a_float_input_are_named_with_their_range(pytester):
    model = save(classifier(), pytester.path / "m.onnx")
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 1, 3, 8, 8)).astype(np.uint8)
    pixels[0, 0, 0, 0, :2] = [0, 255]
    out, notes = _run(pytester, model, x=pixels)
    expected = "input 'x': the data's uint8 converted to float32 (every value kept; the model sees 0..255: normalize the data first if it expects another range)"
    assert expected in notes and expected in out


def test_float64_data_says_whether_it_was_rounded(pytester):
    model = save(classifier(), pytester.path / "m.onnx")
    exact = np.random.default_rng(1).uniform(size=(2, 1, 3, 8, 8)).astype(np.float32).astype(np.float64)
    assert "input 'x': the data's float64 converted to float32 (every value kept)" in _run(pytester, model, x=exact)[1]
    assert "input 'x': the data's float64 converted to float32 (rounded to the nearest value it holds)" in _run(pytester, model, x=exact + 1e-12)[1]


def test_data_of_the_inputs_own_types_gets_no_note(pytester):
    model = save(two_inputs(), pytester.path / "m.onnx")
    _, notes = _run(pytester, model, ids=np.ones((2, 3), np.int32), mask=np.ones((2, 3), bool), x=np.ones((2, 3), np.float32))
    assert [n for n in notes if "converted" in n] == ["input 'ids': the data's int32 converted to int64 (every value kept)"]
