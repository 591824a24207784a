"""review19: rows gathered by a TopK's indices are paired by those indices (gathered_rows) only where
the pairing reads the items right: a TopK along its last axis that keeps fewer than all items."""

import numpy as np
import onnx

from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.gathered_rows import compare, gathered_outputs, probe
from onnx2trt_check.runtime import run_model

FP32 = PRECISION_PROFILES["fp32"]


def _run(model, feeds, **kw):
    return [{name: np.asarray(value) for name, value in out.items()} for out in run_model(model, feeds, **kw)]


def _paired_passes(model, target, feeds, name="out"):
    reference, got = _run(model, feeds), _run(target, feeds)
    return compare(name, [r[name] for r in reference], [g[name] for g in got], FP32, None,
                   probe(model, feeds, _run, reference), probe(target, feeds, _run, got)).passed


COLUMNS = """<ir_version: 8, opset_import: ["" : 17]>
g (float[40, 2] scores, float[40, 2] values) => (float[10, 2] out) <int64[1] k = {10}, int64[2] order = {0, 1}>
{ s = Gather <axis = 1> (scores, order)
  v = Gather <axis = 1> (values, order)
  best, index = TopK <axis = 0> (s, k)
  out = GatherElements <axis = 0> (v, index) }"""


def test_a_topk_along_another_axis_than_the_last_is_not_paired():
    """Its indices [k, batch]: the pairing read each rank's batch columns as the items, so a target that
    swapped the two batch columns passed, column 0's items paired with column 1's."""
    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(2):
        first, second = rng.permutation(20).astype(np.float32), rng.permutation(20).astype(np.float32)
        scores = np.stack([np.concatenate([first + 100, second]), np.concatenate([second, first + 100])], 1)
        feeds.append({"scores": scores, "values": rng.normal(size=(40, 2)).astype(np.float32)})
    model, swapped = onnx.parser.parse_model(COLUMNS), onnx.parser.parse_model(COLUMNS.replace("{0, 1}", "{1, 0}"))
    assert gathered_outputs(model) == {}
    assert not _paired_passes(model, swapped, feeds)


SORT = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 20] scores, float[20, 4] boxes) => (float[1, 20, 4] out) <int64[1] k = {20}>
{ best, index = TopK <axis = 1> (scores, k)
  out = Gather <axis = 0> (boxes, index) }"""


def test_rows_a_sort_gathers_are_not_paired():
    """k = the axis's size: every row selects every item, its order is all it says; paired, a derived
    model that sorted the other way passed fp32 (as output_layout._sorts_whole_axis for the indices)."""
    rng = np.random.default_rng(1)
    feeds = [{"scores": rng.permutation(20).astype(np.float32)[None], "boxes": rng.normal(size=(20, 4)).astype(np.float32)} for _ in range(2)]
    model, reversed_ = onnx.parser.parse_model(SORT), onnx.parser.parse_model(SORT.replace("TopK <axis = 1>", "TopK <axis = 1, largest = 0>"))
    assert gathered_outputs(model) == {}
    assert not _paired_passes(model, reversed_, feeds)
    assert gathered_outputs(onnx.parser.parse_model(SORT.replace("{20}", "{5}").replace("1, 20, 4] out", "1, 5, 4] out"))) == {"out": "index"}


def test_indices_that_do_not_lead_the_output_s_shape_leave_it_positional():
    """A squeezed output [k, 4] beside indices [1, k]: read as rows it compared its first k elements
    alone, and rows 3.. of the target off by 5 passed."""
    rng = np.random.default_rng(0)
    index = rng.permutation(40)[:10][None]
    reference = rng.normal(size=(10, 4)).astype(np.float32)
    broken = reference.copy()
    broken[3:] += 5
    assert not compare("boxes", [reference], [broken], FP32, None, [{"boxes": index}], [{"boxes": index}]).passed


def test_a_target_with_fewer_rows_fails_on_its_shape():
    """Paired, 199 of 200 rows both select would be within the int8 agreement floor."""
    rng = np.random.default_rng(0)
    index = rng.permutation(1000)[:200][None]
    reference = rng.normal(size=(1, 200, 4)).astype(np.float32)
    stats = compare("boxes", [reference], [reference[:, :199]], PRECISION_PROFILES["int8"], None, [{"boxes": index}], [{"boxes": index[:, :199]}])
    assert not stats.passed and "shape" in stats.problems[0], stats.problems


def test_an_index_through_an_op_that_moves_its_items_is_not_followed():
    """Reversed (Slice) or along another axis (GatherElements <axis = 2> on coordinates first): row p is not the item the TopK put at p."""
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 12] scores, float[12, 4] boxes, float[1, 4, 12] columns) => (float[1, 4, 4] a, float[1, 4, 4] b)
<int64[1] k = {4}, int64[1] start = {-1}, int64[1] stop = {-100}, int64[1] step = {-1}, int64[1] one = {1}, int64[1] last = {1}, int64[3] wide = {1, 4, 4}>
{ best, index = TopK (scores, k)
  flipped = Slice (index, start, stop, last, step)
  a = Gather <axis = 0> (boxes, flipped)
  column = Unsqueeze (index, one)
  spread = Expand (column, wide)
  b = GatherElements <axis = 2> (columns, spread) }""")
    assert gathered_outputs(model) == {}


MISALIGNED = """<ir_version: 8, opset_import: ["" : 17]>
det (float[1, 40] scores, float[40, 4] candidates, int64[40] classes) => (float[1, 10, 4] boxes, int64[1, 10] labels) <int64[1] k = {10}>
{ best, index = TopK <axis = 1> (scores, k)
  unsorted_best, unsorted = TopK <axis = 1, sorted = 0> (scores, k)
  boxes = Gather <axis = 0> (candidates, index)
  labels = Gather <axis = 0> (classes, index) }"""


def test_outputs_one_topk_selects_stay_paired_alike():
    """The derived model's labels from a second, unsorted TopK: the same items, each paired by its own
    indices, passed fp32 with every label on another box."""
    rng = np.random.default_rng(0)
    feeds = [{"scores": rng.permutation(40).astype(np.float32)[None], "candidates": rng.normal(size=(40, 4)).astype(np.float32),
              "classes": rng.integers(0, 80, 40).astype(np.int64)} for _ in range(3)]
    model = onnx.parser.parse_model(MISALIGNED)
    derived = onnx.parser.parse_model(MISALIGNED.replace("(classes, index)", "(classes, unsorted)"))
    reference, got = _run(model, feeds), _run(derived, feeds)
    assert [r["labels"].tolist() for r in reference] != [g["labels"].tolist() for g in got]
    ref_idx, got_idx = probe(model, feeds, _run, reference), probe(derived, feeds, _run, got)
    verdicts = {name: compare(name, [r[name] for r in reference], [g[name] for g in got], FP32, None, ref_idx, got_idx).passed for name in ("boxes", "labels")}
    assert verdicts == {"boxes": True, "labels": False}
    same = _run(model, feeds)
    assert all(compare(name, [r[name] for r in reference], [s[name] for s in same], FP32, None, ref_idx, probe(model, feeds, _run, same)).passed
               for name in ("boxes", "labels"))


def test_rows_out_of_their_topk_s_order_fail_paired():
    """review19 F6: a derived TopK with sorted=0 gives the same rows in any order; the pairing put them
    back in the reference's order and the target passed fp32. A target whose rows come in its own
    scores' order (rounding swapping near-ties) still passes paired."""
    rng = np.random.default_rng(2)
    feeds = [{"scores": rng.permutation(20).astype(np.float32)[None], "boxes": rng.normal(size=(20, 4)).astype(np.float32)} for _ in range(2)]
    model = onnx.parser.parse_model(SORT.replace("{20}", "{10}").replace("1, 20, 4] out", "1, 10, 4] out"))
    unsorted = onnx.parser.parse_model(onnx.printer.to_text(model).replace("TopK <axis: int = 1>", "TopK <axis: int = 1, sorted: int = 0>"))
    assert [a.i for n in unsorted.graph.node for a in n.attribute if a.name == "sorted"] == [0]
    reference, got = _run(model, feeds), _run(unsorted, feeds)
    assert not all(np.array_equal(r["out"], g["out"]) for r, g in zip(reference, got)), "ONNX Runtime kept the order: the test shows nothing"
    stats = compare("out", [r["out"] for r in reference], [g["out"] for g in got], FP32, None,
                    probe(model, feeds, _run, reference), probe(unsorted, feeds, _run, got))
    assert not stats.passed and "out of its TopK's score order" in stats.problems[0], stats.problems
    # Two rows swapped where the target's own scores swap them: in order on its side, paired, passed.
    swapped = [{**f, "scores": f["scores"].copy()} for f in feeds]
    for f in swapped:
        top = np.argsort(-f["scores"][0])[:2]
        f["scores"][0, top] = f["scores"][0, top[::-1]]
    near_tie = [{"out": g["out"]} for g in _run(model, swapped)]
    assert _paired_indices_pass(model, feeds, swapped, reference, near_tie)


def _paired_indices_pass(model, feeds, target_feeds, reference, got):
    return compare("out", [r["out"] for r in reference], [g["out"] for g in got], FP32, None,
                   probe(model, feeds, _run, reference), probe(model, target_feeds, _run, got)).passed


TOP5 = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 40] logits) => (int32[N, 5] top5) <int64[1] k = {5}>
{ best, index = TopK <axis = 1> (logits, k)
  top5 = Cast <to = 6> (index) }"""


def test_a_topk_indices_output_out_of_its_scores_order_fails():
    """Compared as the set each row selects, a top-5 whose TopK had sorted=0 passed fp32 ('top-1
    100%') with its first item, the top-1 a user reads, wrong on every row. A target whose own
    scores swap two near-tied items (rounding) gives them in its order and passes."""
    from onnx2trt_check.output_layout import output_layouts

    rng = np.random.default_rng(3)
    feeds = [{"logits": np.stack([rng.permutation(40) for _ in range(4)]).astype(np.float32)} for _ in range(2)]
    model = onnx.parser.parse_model(TOP5)
    unsorted = onnx.parser.parse_model(onnx.printer.to_text(model).replace("TopK <axis: int = 1>", "TopK <axis: int = 1, sorted: int = 0>"))
    layout = output_layouts(model)["top5"]
    reference, got = _run(model, feeds), _run(unsorted, feeds)
    assert not all(np.array_equal(r["top5"], g["top5"]) for r, g in zip(reference, got)), "ONNX Runtime kept the order: the test shows nothing"
    stats = compare("top5", [r["top5"] for r in reference], [g["top5"] for g in got], FP32, layout,
                    probe(model, feeds, _run, reference), probe(unsorted, feeds, _run, got))
    assert not stats.passed and "out of its TopK's score order" in stats.problems[0], stats.problems
    swapped = [{"logits": f["logits"].copy()} for f in feeds]
    for f in swapped:
        for row in f["logits"]:
            top = np.argsort(-row)[:2]
            row[top] = row[top[::-1]]
    near_tie = _run(model, swapped)
    assert compare("top5", [r["top5"] for r in reference], [g["top5"] for g in near_tie], FP32, layout,
                   probe(model, feeds, _run, reference), probe(model, swapped, _run, near_tie)).passed


NMS = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 20, 4] boxes, float[1, 1, 20] scores) => (int64[M, 3] selected, float[M, 4] kept) <int64[1] most = {20}, float[1] iou = {0.5}, float[1] floor = {0.3}, int64[1] two = {2}, int64[1] three = {3}, int64[1] one = {1}>
{ zero = Constant <value = int64[1] {0}> ()
  selected = NonMaxSuppression (boxes, scores, most, iou, floor)
  column = Slice (selected, two, three, one)
  index = Squeeze (column, one)
  flat = Squeeze (boxes, zero)
  kept = Gather <axis = 0> (flat, index) }"""


def test_outputs_an_nms_selects_say_why_their_count_moves():
    """NMS selections are not paired: an honest int8 detector keeping 56 boxes where fp32 keeps 57
    fails on the shape, and the failure says why and what to judge instead."""
    from onnx2trt_check.output_layout import NMS_ADVICE, output_layouts

    layouts = output_layouts(onnx.parser.parse_model(NMS))
    assert layouts["selected"].after_nms and layouts["kept"].after_nms
    rng = np.random.default_rng(4)
    kept = rng.normal(size=(57, 4)).astype(np.float32)
    stats = compare("kept", [kept], [kept[:56]], PRECISION_PROFILES["int8"], layouts["kept"])
    assert not stats.passed and NMS_ADVICE in stats.problems, stats.problems
    assert NMS_ADVICE not in compare("kept", [kept], [kept], FP32, layouts["kept"]).problems


def test_the_order_is_read_along_the_topk_s_own_axis():
    """A top-5 along axis 0 of [40, 3] scores: read along the last axis, its sorted rows (batch
    columns side by side) looked out of order and a model compared with itself failed."""
    text = TOP5.replace("float[N, 40] logits) => (int32[N, 5] top5)", "float[40, 3] logits) => (int32[5, 3] top5)").replace("TopK <axis = 1>", "TopK <axis = 0>")
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(5)
    feeds = [{"logits": rng.normal(size=(40, 3)).astype(np.float32)} for _ in range(2)]
    outputs = _run(model, feeds)
    indices = probe(model, feeds, _run, outputs)
    assert indices is not None and not any(i.unsorted for i in indices)
    assert compare("top5", [o["top5"] for o in outputs], [o["top5"] for o in outputs], FP32, None, indices, indices).passed


def test_a_failure_on_shapes_prints_no_figures_of_nan():
    """hunt20: 'max abs nan, max rel nan, ... SQNR nan dB' beside a shape difference was noise."""
    from onnx2trt_check.compare import format_stats

    reference = np.ones((57, 4), np.float32)
    stats = compare("kept", [reference], [reference[:56]], FP32)
    text = format_stats(stats, FP32)
    assert "differs from reference" in text and "nan" not in text, text
    nonfinite = compare("y", [np.array([np.nan, 1.0], np.float32)], [np.array([np.nan, 2.0], np.float32)], FP32)
    assert "NaN/Inf ref 1" in format_stats(nonfinite, FP32)


def test_a_topk_that_promises_no_order_is_not_held_to_one():
    """An original with sorted=0 makes no promise of order, though on some feed its runtime may give
    its items in order (k = 1 always does): a derived model is not failed for another order there.
    A derived sorted=0 against a sorted original still fails (above)."""
    text = TOP5.replace("{5}", "{1}").replace("int32[N, 5] top5", "int32[N, 1] top5").replace("TopK <axis = 1>", "TopK <axis = 1, sorted = 0>")
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(6)
    feeds = [{"logits": rng.normal(size=(3, 40)).astype(np.float32)}]
    outputs = _run(model, feeds)
    indices = probe(model, feeds, _run, outputs)
    assert indices is not None and not indices[0].unsorted and indices[0].unpromised == {"top5"}  # in order (one item), promised none
    top5 = [o["top5"] for o in outputs]
    broken = [type(indices[0])(indices[0])]  # a target that gives its rows out of order on this feed
    broken[0].unsorted = frozenset({"top5"})
    assert compare("top5", top5, top5, FP32, None, indices, broken).passed  # the original promised no order
    sorted_original = probe(onnx.parser.parse_model(text.replace(", sorted = 0", "")), feeds, _run, outputs)
    assert not compare("top5", top5, top5, FP32, None, sorted_original, broken).passed
