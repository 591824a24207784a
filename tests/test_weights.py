"""Non-finite constants: NaN anywhere and an infinity in a learned weight fail; a -inf mask fill
(as transformers exports write it) is an ordinary value."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnx2trt_check.weights import nonfinite_constants

MASKED = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x, bool[1, 4] keep) => (float[1, 4] y) {
        fill = Constant<value = float[1] {%s}>()
        masked = Where(keep, x, fill)
        y = MatMul(masked, w)
    }
"""


def _model(fill: str, weight: float) -> onnx.ModelProto:
    model = onnx.parser.parse_model(MASKED % fill)
    w = np.eye(4, dtype=np.float32)
    w[0, 0] = weight
    model.graph.initializer.append(onnx.numpy_helper.from_array(w, "w"))
    return model


@pytest.mark.parametrize("fill, weight, failing", [
    ("-inf", 1.0, []),                 # a mask fill: not a failure
    ("nan", 1.0, ["fill"]),            # NaN anywhere is
    ("0", float("inf"), ["w"]),        # an infinite weight is
    ("-inf", float("nan"), ["w"]),
])
def test_which_non_finite_constants_fail(fill, weight, failing):
    found = nonfinite_constants(_model(fill, weight))
    assert sorted(f.name for f in found if f.is_failure) == failing
    assert all(f.name for f in found)  # an unnamed Constant is named by its output


def test_the_core_item_passes_a_mask_fill_and_fails_a_diverged_weight(pytester):
    onnx.save(_model("-inf", 1.0), str(pytester.path / "mask.onnx"))
    onnx.save(_model("0", float("inf")), str(pytester.path / "bad.onnx"))
    result = pytester.runpytest_inprocess("--model", "mask.onnx", "--model", "bad.onnx", "-k", "finite_weights")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*bad.onnx::structure::finite_weights*"])
