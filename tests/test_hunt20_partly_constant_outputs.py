"""hunt20: a segmenter's logits moved between feeds while its bool mask (softmax > threshold) and the
mask's pixel count were all False and 0 on every feed. A derived model with the threshold changed
(0.3 -> 0.9) passed derived::parity at max abs 0, and nothing said that no comparison could see a
fault on the mask's own path: the named rule (zoo16) covered only a run where every output stood
still. The reference row now names each output that is the same on all the feeds."""

import json

import numpy as np
import onnx
from tiny_models import save

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 4] scores, bool[1, 4] mask) {
    scores = Add(x, bias)
    mask = Greater(scores, threshold)
}
"""


def model(threshold: float) -> onnx.ModelProto:
    proto = onnx.parser.parse_model(MODEL)
    proto.graph.initializer.extend([onnx.numpy_helper.from_array(np.zeros(4, np.float32), "bias"),
                                    onnx.numpy_helper.from_array(np.array(threshold, np.float32), "threshold")])
    return proto


def run(pytester, threshold):
    save(model(threshold), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "--report-json", "r.json",
                                          "-p", "no:cacheprovider")  # default inputs: uniform 0..1
    report = next(iter(json.loads((pytester.path / "r.json").read_text())["models"].values()))
    return result, report["families"]["reference"]["checks"]["run"]["figures"]


def test_an_output_that_never_moves_beside_one_that_moves_is_named(pytester):
    result, figures = run(pytester, 5.0)  # the mask is all False on every feed; the scores move
    assert result.ret == 0
    assert figures["constant_outputs"] == ["mask"]
    result.stdout.fnmatch_lines(["*reference*PASSED*output(s) ('mask') are the same on all 4 feeds, which differ: "
                                 "no check of this run can see an error upstream of them alone*"])


def test_outputs_that_all_move_get_no_such_words(pytester):
    result, figures = run(pytester, 0.5)
    assert result.ret == 0 and "constant_outputs" not in figures
    assert "the same on all" not in result.stdout.str()
