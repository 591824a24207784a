"""zoo16: a classifier exported with its ArgMax alone gave one class on all 397 test digits; every
item passed, a conv weight negated included, and nothing said that no comparison could see it
(integer outputs are no evidence of a dead network, so reference::run passes). The reference row
now says every output is the same on all the feeds."""

import json

import numpy as np
import onnx
from tiny_models import save

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 3] x) => (int64[1] label) {
    shifted = Add(x, bias)
    label = ArgMax<axis = 1, keepdims = 0>(shifted)
}
"""


def label_model(bias: list[float]) -> onnx.ModelProto:
    model = onnx.parser.parse_model(MODEL)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(bias, np.float32), "bias"))
    return model


def run(pytester, bias):
    save(label_model(bias), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "--report-json", "r.json", "-p", "no:cacheprovider")
    model = next(iter(json.loads((pytester.path / "r.json").read_text())["models"].values()))
    figures = model["families"]["reference"]["checks"]["run"]["figures"]
    return result, figures


def test_an_output_that_never_moves_is_named_in_the_reference_row(pytester):
    result, figures = run(pytester, [100.0, 0.0, 0.0])  # class 0 on every feed
    assert result.ret == 0  # not a dead network by the rule: a decision may be one class on all feeds
    assert figures["constant_outputs"] == ["label"]
    result.stdout.fnmatch_lines(["*reference*PASSED*every output ('label') is the same on all 4 feeds, which differ: no check*"])


def test_an_output_that_moves_gets_no_such_words(pytester):
    result, figures = run(pytester, [0.0, 0.0, 0.0])
    assert result.ret == 0 and "constant_outputs" not in figures
    assert "is the same on all" not in result.stdout.str()
