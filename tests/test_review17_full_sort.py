"""review17: a TopK's indices are compared as the set each row selects (zoo16), but a TopK whose k is
its axis's whole size is a sort: every row selects every item, so a ranking given in any order passed,
reversed too, under fp32, fp16 and int8 (83f95fa compared it position by position). Its indices are
compared by position again; a TopK of fewer items stays a selection."""

import numpy as np
import onnx
import pytest

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.output_layout import OutputLayout, output_layouts

SORT = """<ir_version: 8, opset_import: ["" : 17]>
g (float[4,{n}] x) => (float[4,{k}] v, int64[4,{k}] i) {{
  kk = Constant<value = int64[1] {{{k}}}>()
  v, i = TopK<axis = 1>(x, kk)
}}"""


def _ranking(k: int):
    model = onnx.parser.parse_model(SORT.format(n=10, k=k))
    scores = np.random.default_rng(0).normal(size=(4, 10))
    reference = np.argsort(-scores, axis=1)[:, :k]
    return output_layouts(model).get("i"), [reference], [reference[:, ::-1].copy()]


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
def test_a_full_sort_given_reversed_fails(profile):
    layout, reference, target = _ranking(10)
    assert layout is None or layout.topk_axis is None
    assert not compare_output("i", reference, target, PRECISION_PROFILES[profile], layout).passed


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
def test_a_selection_of_fewer_items_is_still_a_set(profile):
    layout, reference, target = _ranking(3)
    assert layout.topk_axis == 1
    assert compare_output("i", reference, target, PRECISION_PROFILES[profile], layout).passed


@pytest.mark.parametrize("profile", ["fp32", "fp16", "int8"])
def test_a_full_sort_of_a_free_axis_is_seen_in_the_indices(profile):
    """Where the axis has no static size the graph cannot tell a sort; every row holding every position
    0..k-1 does."""
    scores = np.random.default_rng(1).normal(size=(4, 10))
    reference = [np.argsort(-scores, axis=1)]
    layout = OutputLayout(topk_axis=-1)
    assert not compare_output("i", reference, [reference[0][:, ::-1].copy()], PRECISION_PROFILES[profile], layout).passed
    assert compare_output("i", reference, [reference[0].copy()], PRECISION_PROFILES[profile], layout).passed
