"""topk19: outputs whose rows a TopK's indices gather (boxes, labels = Gather(x, TopK(scores).indices)) are
compared after pairing rows by the item each selects (gathered_rows). Under int8 two near-tied candidates
swap rank, so row i of the reference and row i of the target were different objects: every honest int8
end-to-end detector failed (hunt17: boxes 5.6 dB by position, 54.9 dB paired by the TopK's index)."""

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.gathered_rows import compare, gathered_outputs, probe
from onnx2trt_check.quant.verify import verify_int8
from onnx2trt_check.runtime import run_model

INT8, FP32 = PRECISION_PROFILES["int8"], PRECISION_PROFILES["fp32"]
A, K = 40, 10

DETECTOR = """
<ir_version: 8, opset_import: ["" : 17]>
detector (float[1, 40] scores, float[1, 40, 4] candidates, int64[1, 40] classes) => (float[1, 10, 4] boxes, int64[1, 10] labels)
<int64[1] k = {10}, int64[1] last = {-1}, int64[3] wide = {1, 10, 4}>
{
    best, index = TopK <axis = 1> (scores, k)
    column = Unsqueeze (index, last)
    spread = Expand (column, wide)
    boxes = GatherElements <axis = 1> (candidates, spread)
    labels = GatherElements <axis = 1> (classes, index)
}
"""


def _feeds(count=3, seed=0):
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        scores = rng.permutation(np.linspace(0.5, 0.95, A)).astype(np.float32)[None]
        corners = rng.uniform(0, 80, (1, A, 2)).astype(np.float32)
        feeds.append({"scores": scores, "candidates": np.concatenate([corners, corners + rng.uniform(10, 40, (1, A, 2)).astype(np.float32)], -1),
                      "classes": rng.integers(0, 5, (1, A)).astype(np.int64)})
    return feeds


def _target(model: onnx.ModelProto, *, swap_near_ties=True, box_offset=0.0) -> onnx.ModelProto:
    """The detector as an int8 build rounds it: scores moved by up to 0.012 (0.0115 apart) (near-tied candidates swap
    rank), boxes by 0.05; `box_offset` plants a fault on every box."""
    target = onnx.ModelProto()
    target.CopyFrom(model)
    graph = target.graph
    rng = np.random.default_rng(1)
    jitter = rng.uniform(-0.012, 0.012, (1, A)).astype(np.float32) if swap_near_ties else np.zeros((1, A), np.float32)
    noise = rng.uniform(-0.05, 0.05, (1, A, 4)).astype(np.float32) + np.float32(box_offset)
    graph.initializer.extend([onnx.numpy_helper.from_array(jitter, "jitter"), onnx.numpy_helper.from_array(noise, "noise")])
    graph.node.insert(0, onnx.helper.make_node("Add", ["scores", "jitter"], ["rounded_scores"]))
    graph.node.insert(1, onnx.helper.make_node("Add", ["candidates", "noise"], ["rounded_candidates"]))
    for node in graph.node[2:]:
        node.input[:] = [{"scores": "rounded_scores", "candidates": "rounded_candidates"}.get(i, i) for i in node.input]
    return target


def test_the_graph_names_the_outputs_a_topk_gathers():
    model = onnx.parser.parse_model(DETECTOR)
    assert gathered_outputs(model) == {"boxes": "index", "labels": "index"}


def test_label_maps_concats_flat_offsets_and_gathernd_are_followed():
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 40] scores, float[80, 4] flat, float[2, 40, 4] candidates, int64[2, 40] classes) => (float[2, 10] best, float[2, 10, 4] a, int64[2, 10] b, float[2, 10, 5] c, float[2, 10, 4] d, float[2, 10, 4] e)
    <int64[1] k = {10}, int64[1] last = {-1}, int64[2, 1] offset = {0, 40}, int64[3] table = {2, 0, 1}, float[4] scale = {2.0, 2.0, 2.0, 2.0}, float[2, 10, 4] place = {...}>
    {
        best, index = TopK <axis = 1> (scores, k)
        shifted = Add (index, offset)
        a = Gather <axis = 0> (flat, shifted)
        raw = GatherElements <axis = 1> (classes, index)
        b = Gather <axis = 0> (table, raw)
        column = Unsqueeze (index, last)
        nd = GatherND <batch_dims = 1> (candidates, column)
        scaled = Mul (nd, scale)
        score_column = Unsqueeze (best, last)
        c = Concat <axis = -1> (scaled, score_column)
        d = Add (nd, place)
        e = Gather <axis = 1> (candidates, index)
    }
    """.replace("{...}", "{" + ", ".join(["0.0"] * 80) + "}"))
    found = gathered_outputs(model)
    assert found == {"a": "index", "b": "index", "c": "index"}, found  # d: a per-position constant; e: along axis 1; not best


def _run(model, feeds, **kw):
    return [{name: np.asarray(value) for name, value in out.items()} for out in run_model(model, feeds, **kw)]


def test_near_tied_rows_swapped_by_rounding_pass_paired_and_failed_by_position():
    model, feeds = onnx.parser.parse_model(DETECTOR), _feeds()
    target = _target(model)
    reference, got = _run(model, feeds), _run(target, feeds)
    ref_idx, got_idx = probe(model, feeds, _run, reference), probe(target, feeds, _run, got)
    for name in ("boxes", "labels"):
        ref, out = [r[name] for r in reference], [g[name] for g in got]
        assert not compare_output(name, ref, out, INT8).passed  # what failed every honest int8 detector
        stats = compare(name, ref, out, INT8, None, ref_idx, got_idx)
        assert stats.passed, stats.problems
        assert stats.selected_rows == 3 * K and stats.paired_rows >= 0.95 * 3 * K


def test_a_box_fault_on_the_paired_rows_still_fails():
    model, feeds = onnx.parser.parse_model(DETECTOR), _feeds()
    target = _target(model, box_offset=8.0)
    reference, got = _run(model, feeds), _run(target, feeds)
    stats = compare("boxes", [r["boxes"] for r in reference], [g["boxes"] for g in got], INT8, None,
                    probe(model, feeds, _run, reference), probe(target, feeds, _run, got))
    assert stats.paired_rows and not stats.passed and "paired by the TopK's index" in stats.problems[0], stats.problems


def test_verify_int8_pairs_them_too():
    model, feeds = onnx.parser.parse_model(DETECTOR), _feeds()
    assert verify_int8(model, _target(model), feeds).passed
    assert not verify_int8(model, _target(model, box_offset=8.0), feeds).passed


def test_indices_a_run_does_not_give_back_exactly_leave_the_positional_comparison():
    model, feeds = onnx.parser.parse_model(DETECTOR), _feeds()
    reference = _run(model, feeds)
    other = [{**r, "boxes": r["boxes"] + 1} for r in reference]
    paired = probe(model, feeds, _run, reference)
    assert set(paired[0]) == {"boxes", "labels"} and set(probe(model, feeds, _run, other)[0]) == {"labels"}
    assert probe(model, feeds, lambda m, f: 1 / 0, reference) is None
    positional = compare_output("boxes", [r["boxes"] for r in reference], [o["boxes"] for o in other], INT8)
    stats = compare("boxes", [r["boxes"] for r in reference], [o["boxes"] for o in other], INT8, None, paired, probe(model, feeds, _run, other))
    assert not hasattr(stats, "paired_rows") and stats.problems == positional.problems


def _arrays(rows=20, seed=0):
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(0, 100, (1, rows, 4))
    index = rng.permutation(1000)[:rows][None]
    return boxes, index


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 19))
def test_permuting_the_target_rows_with_their_indices_never_changes_the_verdict(seed, corrupt):
    boxes, index = _arrays(seed=seed % 1000)
    order = np.random.default_rng(seed).permutation(boxes.shape[1])
    noisy = boxes + np.random.default_rng(seed + 1).normal(0, 0.01, boxes.shape)
    kept = compare("boxes", [boxes], [noisy], INT8, None, [{"boxes": index}], [{"boxes": index}])
    moved = compare("boxes", [boxes], [noisy[:, order]], INT8, None, [{"boxes": index}], [{"boxes": index[:, order]}])
    assert kept.passed and moved.passed and moved.paired_rows == 20
    assert moved.sqnr_db == kept.sqnr_db
    broken = noisy.copy()
    broken[0, corrupt] += 50.0  # one paired row wrong: its item's box is elsewhere
    assert not compare("boxes", [boxes], [broken[:, order]], INT8, None, [{"boxes": index}], [{"boxes": index[:, order]}]).passed


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 20))
def test_the_share_both_select_is_judged_like_topk_indices(seed, replaced):
    boxes, index = _arrays(seed=seed % 1000)
    other = index.copy()
    other[0, 20 - replaced:] += 1000  # items the reference never selected
    stats = compare("boxes", [boxes], [boxes], INT8, None, [{"boxes": index}], [{"boxes": other}])
    assert stats.paired_rows == 20 - replaced
    assert stats.passed == (replaced <= 1)  # one of 20 under int8's 95%
    assert compare("boxes", [boxes], [boxes], FP32, None, [{"boxes": index}], [{"boxes": other}]).passed == (replaced == 0)


def _with_qdq_scores(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with a Q/DQ pair (uint8, step 1/255) on its scores: a quantized model, judged by the int8 profile."""
    graph = model.graph
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array(1 / 255, np.float32), "step"),
                              onnx.numpy_helper.from_array(np.array(0, np.uint8), "zero")])
    graph.node.insert(0, onnx.helper.make_node("QuantizeLinear", ["scores", "step", "zero"], ["q_scores"]))
    graph.node.insert(1, onnx.helper.make_node("DequantizeLinear", ["q_scores", "step", "zero"], ["dq_scores"]))
    for node in graph.node[2:]:
        node.input[:] = ["dq_scores" if i == "scores" else i for i in node.input]
    return model


def test_a_quantized_detector_passes_parity_and_ort_against_its_original_and_a_box_fault_fails(tmp_path):
    from onnx2trt_check import api  # noqa: PLC0415

    feeds = _feeds(4)
    np.savez(tmp_path / "data.npz", **{name: np.stack([f[name] for f in feeds]) for name in feeds[0]})
    model = onnx.parser.parse_model(DETECTOR)
    onnx.save(model, tmp_path / "original.onnx")
    for offset, outcome in ((0.0, "passed"), (8.0, "failed")):
        onnx.save(_with_qdq_scores(_target(model, box_offset=offset)), tmp_path / "int8.onnx")
        result = api.check(str(tmp_path / "int8.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'data.npz'}",
                                                                     "-k", "parity or accuracy",
                                                                     "-p", "no:cacheprovider", "-q"])
        families = next(iter(result.report["models"].values()))["families"]
        items = [families["derived"]["checks"]["parity"]] + [families[f"target[{t}]"]["checks"]["accuracy"] for t in ("ort", "ort-int8")]
        for item in items[:2] if offset else items:  # ort-int8: against the model's own float counterpart, which has the fault too
            assert item["outcome"] == outcome, (offset, item.get("message"))


SCORED = """
<ir_version: 8, opset_import: ["" : 17]>
scored (float[1, 200, 16] x) => (float[1, 20, 4] boxes)
<float[16, 1] w = {W}, float[16, 4] v = {V}, int64[1] k = {20}, int64[1] last = {-1}, int64[3] wide = {1, 20, 4}>
{
    logit = MatMul (x, w)
    score = Squeeze (logit, last)
    best, index = TopK <axis = 1> (score, k)
    coords = MatMul (x, v)
    column = Unsqueeze (index, last)
    spread = Expand (column, wide)
    boxes = GatherElements <axis = 1> (coords, spread)
}
"""


def test_the_calibration_sweep_pairs_gathered_rows(tmp_path):
    from onnx2trt_check import api  # noqa: PLC0415

    rng = np.random.default_rng(0)
    text = SCORED.replace("{W}", "{" + ", ".join(f"{w:.4f}" for w in rng.normal(size=16)) + "}")
    onnx.save(onnx.parser.parse_model(text.replace("{V}", "{" + ", ".join(f"{v:.4f}" for v in rng.normal(0, 10, 64)) + "}")), tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(16, 1, 200, 16)).astype(np.float32))
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(8, 1, 200, 16)).astype(np.float32))
    result = api.check(str(tmp_path / "m.onnx"), pytest_args=[f"--calibration-data={tmp_path / 'calib.npz'}", f"--inputs={tmp_path / 'data.npz'}",
                                                               "--calibration-sweep", "-k", "calibration", "-p", "no:cacheprovider", "-q"])
    families = next(iter(result.report["models"].values()))["families"]
    sweep = {name: family["checks"]["accuracy"] for name, family in families.items() if name.startswith("calibration[")}
    assert len(sweep) == 5 and all(item["outcome"] == "passed" for item in sweep.values()), {n: i.get("message") for n, i in sweep.items()}
