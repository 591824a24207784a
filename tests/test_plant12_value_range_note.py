"""plant12: a derived model that clips its input to the range of the data passed, and the summary
did not say what range the data covered. The notes now give every float input's range on the feeds;
a dynamic dim set by the data says the targets run no other size."""

import re

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from onnx2trt_check.feed_notes import value_range_note

values = arrays(np.float32, st.integers(1, 6), elements=st.floats(-1e6, 1e6, width=32) | st.just(np.inf) | st.just(np.nan))


@given(st.lists(values, min_size=1, max_size=4))
def test_the_note_spans_every_finite_value_and_nothing_more(feeds_x):
    feeds = [{"x": x, "ids": np.arange(3)} for x in feeds_x]
    note = value_range_note(feeds)
    finite = np.concatenate([x[np.isfinite(x)] for x in feeds_x])
    if not finite.size:
        assert note == []
        return
    (line,) = note
    assert "ids" not in line  # integer inputs have their own note
    low, high = (float(v) for v in re.search(r"x in \[(\S+), (\S+)\]", line).groups())
    assert np.isclose(low, finite.min(), rtol=1e-3, atol=1e-30) and np.isclose(high, finite.max(), rtol=1e-3, atol=1e-30)


def test_the_summary_states_the_range_and_the_fixed_sizes(pytester):
    import onnx
    import onnx.parser

    onnx.save(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["": 17]>
        g (float[N,3] x) => (float[N,3] y) { y = Relu(x) }"""), pytester.path / "m.onnx")
    np.savez(pytester.path / "x.npz", x=np.array([[[-2.0, 0.5, 1.0]], [[0.0, 3.5, -1.0]]], np.float32))
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--inputs", "x.npz", "-k", "reference", "-p", "no:cacheprovider")
    out = result.stdout.str()  # plain substrings: fnmatch reads [-2, 3.5] as a character class
    assert "float input values on the feeds: x in [-2, 3.5] (nothing outside is checked)" in out, out
    assert "dynamic dim(s) N set by the input data: shape [1, 3] (the targets run no other size)" in out, out
