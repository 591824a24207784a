"""Model loading, input specs and feeds (model.py, data.py): the good paths and every bad input."""

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tiny_models import classifier, parse, save, two_inputs

from onnx2trt_check.data import (
    FeedOptions,
    feeds_from_loader,
    feeds_from_npz,
    make_feeds,
    parse_range,
    random_feeds,
)
from onnx2trt_check.errors import InputDataError, ModelError
from onnx2trt_check.model import load_model, parse_shape, resolve_input_specs


def test_load_model_fingerprints_without_touching_the_file(tmp_path):
    path = save(classifier(), tmp_path / "m.onnx")
    before = path.read_bytes()
    loaded = load_model(path)
    assert len(loaded.sha256) == 64 and loaded.graph.node[0].op_type == "Conv"
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), (b"hello, not a model", "not a valid ONNX model"), ("truncated", "not a valid ONNX model")],
)
def test_bad_model_files(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    if content == "truncated":
        path.write_bytes(classifier().SerializeToString()[:300])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_missing_external_data_names_the_tensor_and_the_file(tmp_path):
    model = classifier()
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    (tmp_path / "m.data").unlink()
    with pytest.raises(ModelError, match=r"initializer 'w' .* 'm.data', which is missing"):
        load_model(tmp_path / "m.onnx")


def test_leading_dynamic_dim_defaults_to_one_and_is_reported():
    (spec,) = resolve_input_specs(classifier(batch="N"))
    assert spec.shape == (1, 3, 8, 8) and spec.defaulted == ("N",)


def test_non_batch_dynamic_dim_needs_an_override_named_in_the_error():
    model = parse('<ir_version: 8, opset_import: ["" : 17]> g (float[1, 3, H, W] x) => (float[1, 3, H, W] y) { y = Relu(x) }')
    with pytest.raises(ModelError, match=r"dynamic dim 'H'; pass --input-shape x:1x3xNxN"):
        resolve_input_specs(model)
    (spec,) = resolve_input_specs(model, {"x": (1, 3, 5, 7)})
    assert spec.shape == (1, 3, 5, 7) and spec.defaulted == ()


def test_override_must_agree_with_fixed_dims():
    with pytest.raises(ModelError, match="fixes it at 3"):
        resolve_input_specs(classifier(), {"x": (1, 4, 8, 8)})


@pytest.mark.parametrize("text", ["x", "x:", "x:1xa", "x:-1x3", ":1x2"])
def test_malformed_input_shape(text):
    with pytest.raises(ModelError, match="malformed"):
        parse_shape(text)


@given(st.integers(0, 2**32 - 1), st.floats(-100, 100), st.floats(0.5, 100))
def test_random_feeds_are_seeded_typed_and_in_range(seed, low, width):
    specs = resolve_input_specs(two_inputs())
    ranges = {"*": (low, low + width)}
    if np.ceil(low) > np.floor(low + width):
        with pytest.raises(InputDataError, match="of integer input 'ids' holds no integer"):
            random_feeds(specs, seed=seed, count=1, ranges=ranges)
        return
    first = random_feeds(specs, seed=seed, count=2, ranges=ranges)
    again = random_feeds(specs, seed=seed, count=2, ranges=ranges)
    for a, b in zip(first, again):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    feed = first[0]
    assert feed["ids"].dtype == np.int64 and feed["mask"].dtype == np.bool_ and feed["x"].dtype == np.float32
    assert np.all((feed["x"] >= np.float32(low)) & (feed["x"] <= np.float32(low + width)))
    assert np.all((feed["ids"] >= np.ceil(low)) & (feed["ids"] <= np.floor(low + width)))


def test_string_input_cannot_be_generated():
    model = parse('<ir_version: 8, opset_import: ["" : 17]> g (string[2] s) => (string[2] y) { y = Identity(s) }')
    with pytest.raises(InputDataError, match="type STRING, for which no random data can be generated; pass real data"):
        make_feeds(resolve_input_specs(model), FeedOptions())


def test_npz_single_feed_and_stack(tmp_path):
    specs = resolve_input_specs(classifier(batch=1))
    np.savez(tmp_path / "one.npz", x=np.ones((1, 3, 8, 8), np.float32))
    np.savez(tmp_path / "stack.npz", x=np.ones((5, 1, 3, 8, 8), np.float64))  # float64 is cast
    assert len(feeds_from_npz(tmp_path / "one.npz", specs)) == 1
    stack = feeds_from_npz(tmp_path / "stack.npz", specs)
    assert len(stack) == 5 and stack[0]["x"].dtype == np.float32 and stack[0]["x"].shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"y": np.ones((1, 3, 8, 8), np.float32)}, "array 'y', which is not an input"),
        ({}, "holds no arrays"),
        ({"x": np.ones((1, 3, 8, 8), np.float32), "q": np.ones(2)}, "array 'q', which is not an input"),
        ({"x": np.ones((1, 3, 4, 4), np.float32)}, r"shape \[1, 3, 4, 4\], but the input is \[1, 3, 8, 8\]"),
        ({"x": np.ones((1, 3, 8, 8), np.complex64)}, "convert it before saving"),
    ],
)
def test_npz_mismatches(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputDataError, match=message):
        feeds_from_npz(tmp_path / "d.npz", resolve_input_specs(classifier(batch=1)))


def test_malformed_npz(tmp_path):
    (tmp_path / "d.npz").write_text("not a zip")
    with pytest.raises(InputDataError, match=r"is not an .npz archive \(not a zip file\)"):
        feeds_from_npz(tmp_path / "d.npz", resolve_input_specs(classifier()))


def test_dynamic_batch_accepts_any_batch_in_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((7, 3, 8, 8), np.float32))
    (feed,) = feeds_from_npz(tmp_path / "d.npz", resolve_input_specs(classifier(batch="N")))
    assert feed["x"].shape == (7, 3, 8, 8)


def test_data_loader_script_default_and_named_function(tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(
        "import numpy as np\n"
        "def load_data():\n    for i in range(3):\n        yield {'x': np.full((1, 3, 8, 8), i, np.float32)}\n"
        "def other():\n    return [{'x': np.zeros((1, 3, 8, 8), np.float32)}]\n"
    )
    specs = resolve_input_specs(classifier())
    assert [f["x"][0, 0, 0, 0] for f in feeds_from_loader(str(script), specs)] == [0, 1, 2]
    assert len(feeds_from_loader(f"{script}:other", specs)) == 1


@pytest.mark.parametrize(
    "body, reference_suffix, message",
    [
        ("raise RuntimeError('boom')\n", "", "failed to import: RuntimeError: boom"),
        ("x = 1\n", "", "has no function 'load_data'"),
        ("def load_data():\n    yield [1]\n", "", "yielded a list at #0"),
        ("def load_data():\n    return []\n", "", "yielded no feeds"),
    ],
)
def test_data_loader_errors(tmp_path, body, reference_suffix, message):
    script = tmp_path / "loader.py"
    script.write_text(body)
    with pytest.raises(InputDataError, match=message):
        feeds_from_loader(str(script) + reference_suffix, resolve_input_specs(classifier()))


def test_parse_range():
    assert parse_range("images:0,255") == ("images", (0.0, 255.0))
    assert parse_range("-1,1") == ("*", (-1.0, 1.0))
    with pytest.raises(InputDataError, match="malformed"):
        parse_range("x:5,1")
