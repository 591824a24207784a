"""Activation statistics: the per-tensor figures, their merging, and the ORT collection."""

import numpy as np
import onnx
import onnx.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.precision.activations import TensorStats, collect_activation_stats

# Magnitudes on both sides of every threshold the statistics use, signs, zeros and non-finite values.
SMALLEST_NORMAL = np.float32(2.0**-14)
SPECIAL = [
    float(np.float32(v))  # exactly representable, as hypothesis requires for a float32 array
    for v in [0.0, -0.0, SMALLEST_NORMAL, np.nextafter(SMALLEST_NORMAL, np.float32(0)), 1e-7, -3e-5, 1.0, -65504.0, 1e6]
] + [np.inf, -np.inf, np.nan]
ELEMENTS = st.one_of(st.sampled_from(SPECIAL), st.floats(-1e6, 1e6, width=32))
ARRAYS = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=ELEMENTS)


def numpy_figures(values: np.ndarray) -> dict:
    """The statistics written out element by element, independent of TensorStats.of."""
    flat = [float(v) for v in np.ravel(values)]
    finite = [abs(v) for v in flat if np.isfinite(v)]
    return {
        "count": len(flat),
        "nonzero": sum(1 for v in finite if v != 0),
        "underflow": sum(1 for v in finite if 0 < v < 6.103515625e-05),
        "nan": sum(1 for v in flat if v != v),
        "inf": sum(1 for v in flat if v in (float("inf"), float("-inf"))),
        "max_abs": max(finite, default=0.0),
    }


@given(ARRAYS)
def test_stats_match_elementwise_definition(values):
    stats = TensorStats.of(values)
    expected = numpy_figures(values)
    assert {key: getattr(stats, key) for key in expected} == expected
    nonzero = expected["nonzero"]
    assert stats.underflow_fraction == (expected["underflow"] / nonzero if nonzero else 0.0)
    assert stats.has_nonfinite == bool(expected["nan"] or expected["inf"])


@given(st.lists(ARRAYS, min_size=1, max_size=4))
def test_merged_stats_equal_stats_of_concatenation(parts):
    merged = TensorStats()
    for part in parts:
        merged = merged.merged(TensorStats.of(part))
    assert merged == TensorStats.of(np.concatenate([part.ravel() for part in parts]))


MODEL_TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3] x) => (float[2,3] z) {
  y = Mul(x, c)
  z = Relu(y)
}"""


def scaled_relu_model(scale: float) -> onnx.ModelProto:
    model = onnx.parser.parse_model(MODEL_TEXT)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(scale, np.float32), "c"))
    return model


FEED_VALUES = st.one_of(st.sampled_from([float(np.float32(v)) for v in (0.0, 1e-6, -2e-5, 7e-5, 70000.0)]), st.floats(-1e4, 1e4, width=32))
FEEDS = st.lists(hnp.arrays(np.float32, (2, 3), elements=FEED_VALUES), min_size=1, max_size=4)


@given(FEEDS, st.sampled_from([1.0, -0.5, 1e-3, 3.0]))
def test_collected_stats_equal_numpy_over_concatenated_activations(feeds, scale):
    model = scaled_relu_model(scale)
    stats = collect_activation_stats(model, [{"x": x} for x in feeds])
    inputs = np.concatenate(feeds)
    products = inputs * np.float32(scale)
    activations = {"x": inputs, "y": products, "z": np.maximum(products, 0)}
    assert set(stats) == set(activations)
    for name, values in activations.items():
        expected = numpy_figures(values)
        assert {key: getattr(stats[name], key) for key in expected} == expected, name


def test_selected_tensors_only_and_model_unchanged():
    model = scaled_relu_model(2.0)
    before = model.SerializeToString()
    stats = collect_activation_stats(model, [{"x": np.full((2, 3), -1.5, np.float32)}], tensors=["y"])
    assert list(stats) == ["y"]
    assert stats["y"].max_abs == 3.0 and stats["y"].count == 6
    assert model.SerializeToString() == before


def test_unknown_tensor_and_empty_feeds_are_misuse():
    model = scaled_relu_model(2.0)
    with pytest.raises(ConfigError, match="'nope'"):
        collect_activation_stats(model, [{"x": np.ones((2, 3), np.float32)}], tensors=["nope"])
    with pytest.raises(InputDataError, match="feeds is empty"):
        collect_activation_stats(model, [])


def test_each_feeds_activations_are_released_before_the_next_feed_runs(monkeypatch):
    # Two feeds' activations (every float tensor of the graph) at once were the peak of the fp16
    # conversion; the statistics need one feed's at a time.
    import weakref

    from onnx2trt_check.precision import activations

    alive_at_each_run = []
    previous: list = []

    class Recording:
        def __init__(self, session):
            self.session = session

        def run(self, names, feed):
            alive_at_each_run.append(sum(ref() is not None for ref in previous))
            arrays = self.session.run(names, feed)
            previous[:] = [weakref.ref(array) for array in arrays]
            return arrays

    real = activations.create_session
    monkeypatch.setattr(activations, "create_session", lambda model, **kw: Recording(real(model, **kw)))
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 3] x) => (float[2, 3] y) { r = Relu(x)  y = Neg(r) }""")
    feeds = [{"x": np.full((2, 3), float(i), np.float32)} for i in range(3)]
    stats = collect_activation_stats(model, feeds)
    assert alive_at_each_run == [0, 0, 0]
    assert stats["y"].max_abs == 2.0 and stats["y"].count == 18
