"""Derived models with one planted, deployment-realistic fault each (plant12).

python plant.py  -> /work/plant12/models/<id>.onnx (+ its original's data copied as <id>.npz when the
inputs are unchanged). Every fault is an onnx.helper edit of a /work/zoo* model; FAULTS lists them
with the original, the fault text and what a correct verdict is.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path("/work/plant12/models")


def load(path):
    return onnx.load(path)


def const(g, name, array):
    g.initializer.append(numpy_helper.from_array(np.asarray(array), name))
    return name


def retail(model, output, build):
    """Rename graph output `output` to output+'__pre' at its producer, then build(g, pre, out) adds
    nodes computing `output` from it."""
    g = model.graph
    pre = output + "__pre"
    for node in g.node:
        node.output[:] = [pre if o == output else o for o in node.output]
    build(g, pre, output)
    return model


def node(g, op, inputs, outputs, **attrs):
    g.node.append(helper.make_node(op, inputs, outputs, **attrs))


def reinput(model, name, build):
    """Readers of input `name` read build(g, name) instead."""
    g = model.graph
    before = len(g.node)
    new = build(g, name)
    for n in g.node[:before]:
        n.input[:] = [new if i == name else i for i in n.input]
    return model


def batch_hardcoded(path, batch):  # Reshape(logits, [batch, -1]): a traced batch kept in the graph
    m = load(path)
    return retail(m, "logits", lambda g, pre, out: node(g, "Reshape", [pre, const(g, "plant_shape", np.array([batch, -1], np.int64))], [out]))


def fixed_resize(path, size):  # input resized to the traced resolution: other resolutions silently squashed
    m = load(path)

    def build(g, name):
        node(g, "Shape", [name], ["plant_shape_all"], end=2)
        node(g, "Concat", ["plant_shape_all", const(g, "plant_hw", np.array(size, np.int64))], ["plant_sizes"], axis=0)
        node(g, "Resize", [name, "", "", "plant_sizes"], ["plant_resized"], mode="linear")
        return "plant_resized"
    reinput(m, "input", build)
    m.graph.node.sort(key=lambda n: 0 if n.output[0].startswith("plant_") else 1)
    return m


def truncated_sequence(path, length):  # tokens beyond a traced max length dropped
    m = load(path)
    g = m.graph
    const(g, "plant_s0", np.array([0], np.int64))
    const(g, "plant_s1", np.array([length], np.int64))
    const(g, "plant_ax", np.array([1], np.int64))
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        reinput(m, name, lambda g, n: (node(g, "Slice", [n, "plant_s0", "plant_s1", "plant_ax"], [f"plant_{n}"]), f"plant_{n}")[1])
    m.graph.node.sort(key=lambda n: 0 if n.output[0].startswith("plant_") else 1)
    return m


def gru_last_step_fixed(path, index):  # logits read step `index` instead of the last (-1)
    m = load(path)
    for n in m.graph.node:
        if n.output[0] == "/Constant_output_0":
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(index, np.int64)))
    return m


def if_branch(path, branch):  # the branch the feeds do not take gets a wrong constant
    m = load(path)
    for n in m.graph.node:
        if n.op_type == "If":
            for a in n.attribute:
                if a.name == branch:
                    c = a.g.node[0]
                    value = numpy_helper.to_array(c.attribute[0].t)
                    c.attribute[0].t.CopyFrom(numpy_helper.from_array((value * 1.5 + 0.25).astype(value.dtype)))
    return m


def clipped_input(path, low, high):  # identical on the feeds, wrong outside their range
    m = load(path)

    def build(g, name):
        node(g, "Clip", [name, const(g, "plant_lo", np.array(low, np.float32)), const(g, "plant_hi", np.array(high, np.float32))], ["plant_clipped"])
        return "plant_clipped"
    reinput(m, "input", build)
    m.graph.node.sort(key=lambda n: 0 if n.output[0].startswith("plant_") else 1)
    return m


def scale_output(path, output, factor, index=None):
    m = load(path)

    def build(g, pre, out):
        shape = next(v for v in m.graph.output if v.name == output).type.tensor_type.shape
        last = shape.dim[-1].dim_value
        scale = np.ones(last, np.float32)
        scale[index if index is not None else slice(None)] = factor
        node(g, "Mul", [pre, const(g, "plant_scale", scale)], [out])
    return retail(m, output, build)


def reorder_outputs(path):
    m = load(path)
    outs = list(m.graph.output)
    del m.graph.output[:]
    m.graph.output.extend(reversed(outs))
    return m


def swap_output_names(path, a, b):
    m = load(path)
    for n in m.graph.node:
        n.output[:] = [{a: b, b: a}.get(o, o) for o in n.output]
    return m


def add_int(path, output, delta):
    m = load(path)
    return retail(m, output, lambda g, pre, out: node(g, "Add", [pre, const(g, "plant_one", np.array(delta, np.int64))], [out]))


def nan_elements(path, output, shape, where):
    m = load(path)
    mask = np.zeros(shape, bool)
    for w in where:
        mask[w] = True
    return retail(m, output, lambda g, pre, out: node(g, "Where", [const(g, "plant_mask", mask), const(g, "plant_nan", np.array(np.nan, np.float32)), pre], [out]))


def reverse_rows(path, output, rows):
    m = load(path)
    return retail(m, output, lambda g, pre, out: node(g, "Gather", [pre, const(g, "plant_rows", np.arange(rows)[::-1].astype(np.int64))], [out], axis=1))


def cxcywh(path, output):  # boxes columns 0..3 as xyxy instead of cxcywh, the other columns kept
    m = load(path)

    def build(g, pre, out):
        node(g, "Split", [pre, const(g, "plant_split", np.array([2, 2, 4], np.int64))], ["plant_c", "plant_wh", "plant_rest"], axis=2)
        node(g, "Mul", ["plant_wh", const(g, "plant_half", np.array(0.5, np.float32))], ["plant_hwh"])
        node(g, "Sub", ["plant_c", "plant_hwh"], ["plant_x0"])
        node(g, "Add", ["plant_c", "plant_hwh"], ["plant_x1"])
        node(g, "Concat", ["plant_x0", "plant_x1", "plant_rest"], [out], axis=2)
    return retail(m, output, build)


def bgr(path):
    m = load(path)

    def build(g, name):
        node(g, "Gather", [name, const(g, "plant_bgr", np.array([2, 1, 0], np.int64))], ["plant_bgr_in"], axis=1)
        return "plant_bgr_in"
    reinput(m, "input", build)
    m.graph.node.sort(key=lambda n: 0 if n.output[0].startswith("plant_") else 1)
    return m


def bn_eps(path, eps):
    m = load(path)
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            for a in n.attribute:
                if a.name == "epsilon":
                    a.f = eps
            if not any(a.name == "epsilon" for a in n.attribute):
                n.attribute.append(helper.make_attribute("epsilon", eps))
    return m


def pruned(path, share):  # magnitude pruning of every Conv/Gemm weight, no fine-tuning
    m = load(path)
    weights = {n.input[1] for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1}
    for t in m.graph.initializer:
        if t.name in weights:
            a = numpy_helper.to_array(t).copy()
            a[np.abs(a) < np.quantile(np.abs(a), share)] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    return m


def offset(path, output, value):  # an original whose output carries a large constant offset
    m = load(path)
    return retail(m, output, lambda g, pre, out: node(g, "Add", [pre, const(g, "plant_offset", np.array(value, np.float32))], [out]))


def qdq_wrong_variation(path, output, value, factor):
    """The offset model, its output's varying part scaled by `factor` (wrong), then Q/DQ on the
    output as an int8 export leaves it (so the tool judges it as int8)."""
    m = load(path)

    def build(g, pre, out):
        node(g, "Mul", [pre, const(g, "plant_f", np.array(factor, np.float32))], ["plant_v"])
        node(g, "Add", ["plant_v", const(g, "plant_offset", np.array(value, np.float32))], ["plant_o"])
        node(g, "QuantizeLinear", ["plant_o", const(g, "plant_qs", np.array(value / 100.0, np.float32)), const(g, "plant_qz", np.array(0, np.int8))], ["plant_q"])
        node(g, "DequantizeLinear", ["plant_q", "plant_qs", "plant_qz"], [out])
    return retail(m, output, build)


def fp16_overflow_above(path, limit):
    """Cast to fp16 with a x*(65504/limit) step (an fp16 export's prescale): inputs above `limit`
    overflow to inf; below, only fp16 rounding."""
    m = load(path)

    def build(g, name):
        k = 65504.0 / limit
        node(g, "Cast", [name], ["plant_h"], to=TensorProto.FLOAT16)
        node(g, "Mul", ["plant_h", const(g, "plant_k", np.array(k, np.float16))], ["plant_hk"])
        node(g, "Div", ["plant_hk", const(g, "plant_k2", np.array(k, np.float16))], ["plant_hd"])
        node(g, "Cast", ["plant_hd"], ["plant_back"], to=TensorProto.FLOAT)
        return "plant_back"
    reinput(m, "input", build)
    m.graph.node.sort(key=lambda n: 0 if n.output[0].startswith("plant_") else 1)
    return m


def channel_swap_output(path, output, a, b):
    m = load(path)
    return retail(m, output, lambda g, pre, out: node(g, "Gather", [pre, const(g, "plant_perm", np.array([b if i == a else a if i == b else i for i in range(4)], np.int64))], [out], axis=1))


def perturb(path, output, std, seed=0):  # a distilled model: its output off by small noise-like error
    m = load(path)
    shape = [d.dim_value or 1 for d in next(v for v in m.graph.output if v.name == output).type.tensor_type.shape.dim]
    noise = np.random.default_rng(seed).normal(0, std, shape[1:]).astype(np.float32)
    return retail(m, output, lambda g, pre, out: node(g, "Add", [pre, const(g, "plant_noise", noise)], [out]))


Z = "/work/zoo"
FAULTS = [
    # id, original, builder, fault text, extra pytest options, what a right verdict is
    ("batch_hardcoded", f"{Z}/mobilenetv3_ts.onnx", lambda p: batch_hardcoded(p, 2), "Reshape(logits, [2, -1]): the traced batch 2 kept; batch 1 fails (model declares batch dynamic)", [], "fail"),
    ("fixed_resize", f"{Z}/mobilenetv3_ts.onnx", lambda p: fixed_resize(p, [96, 96]), "input Resize to the traced 96x96: other resolutions (declared dynamic) silently resampled", [], "fail-or-note"),
    ("bert_truncated", f"{Z}/bert_ts.onnx", lambda p: truncated_sequence(p, 32), "inputs Sliced to the traced 32 tokens: longer sequences silently truncated (sequence declared dynamic)", [], "fail-or-note"),
    ("gru_fixed_step", f"{Z}/gru_ts.onnx", lambda p: gru_last_step_fixed(p, 19), "logits read step 19 (traced length 20) instead of the last: wrong at other lengths", [], "fail-or-note"),
    ("if_else_branch", "/work/zoo5/script_loop_if_ts.onnx", None, "wrong constant in the If branch the feeds do not take", [], "note"),
    ("clip_input_range", f"{Z}/mobilenetv3_ts.onnx", lambda p: clipped_input(p, -2.1179039478302, 2.640000104904175), "input clipped to the range of the feeds: wrong on values outside it", [], "note"),
    ("lstm_second_output", f"{Z}/lstm_ts.onnx", lambda p: scale_output(p, "logits", 1.02), "second output logits x1.02, first output steps fine", [], "fail"),
    ("lstm_outputs_reordered", f"{Z}/lstm_ts.onnx", reorder_outputs, "graph outputs listed in the other order, names kept (a by-index consumer reads the wrong one)", [], "fail-or-note"),
    ("clip_embeds_swapped", "/work/zoo6/clip_ts.onnx", lambda p: swap_output_names(p, "text_embeds", "image_embeds"), "two same-shaped outputs [2,16] swapped (names exchanged)", [], "fail"),
    ("argmax_off_by_one", "/work/zoo5/argmax_out_ts.onnx", lambda p: add_int(p, "label", 1), "integer label output +1", [], "fail"),
    ("det_topk_labels_off", "/work/zoo5/det_topk_ts.onnx", lambda p: add_int(p, "labels", 1), "detector class ids +1 (0- vs 1-based)", [], "fail"),
    ("yolo_nan", f"{Z}/yolo_ts.onnx", lambda p: nan_elements(p, "detections", (1, 252, 8), [(0, 5, 2), (0, 200, 7)]), "NaN in 2 of 2016 elements", [], "fail"),
    ("effnet_class_scaled", f"{Z}/efficientnet_ts.onnx", lambda p: scale_output(p, "logits", 1.05, index=3), "class 3 logit x1.05", [], "fail"),
    ("yolo_rows_reversed", f"{Z}/yolo_ts.onnx", lambda p: reverse_rows(p, "detections", 252), "detections in reverse order", [], "fail"),
    ("yolo_xyxy", f"{Z}/yolo_ts.onnx", lambda p: cxcywh(p, "detections"), "boxes xyxy instead of cxcywh", [], "fail"),
    ("resnet_bgr", f"{Z}/preact_resnet_ts.onnx", bgr, "input channels swapped (RGB/BGR) inside the model", [], "fail"),
    ("unet_classes_swapped", f"{Z}/unet_ts.onnx", lambda p: channel_swap_output(p, "logits", 1, 2), "segmentation classes 1 and 2 swapped", [], "fail"),
    ("bn_eps", "/work/zoo8/deeplabish_ts.onnx", lambda p: bn_eps(p, 1e-2), "BatchNormalization epsilon 1e-2 (a BN fold with the wrong eps)", [], "fail"),
    ("pruned_beyond_atol", f"{Z}/mobilenetv3_ts.onnx", lambda p: pruned(p, 0.3), "30% magnitude pruning, user asks --atol 1e-2", ["--atol=1e-2", "--rtol=0"], "fail"),
    ("distilled_within_atol", f"{Z}/efficientnet_ts.onnx", lambda p: perturb(p, "logits", 2e-3), "logits + noise std 2e-3, user asks --atol 1e-2 (honest: within)", ["--atol=1e-2", "--rtol=0"], "pass"),
    ("distilled_output_tol", f"{Z}/efficientnet_ts.onnx", lambda p: perturb(p, "logits", 2e-2), "logits + noise std 2e-2, user asks --output-tolerance logits:atol=1e-2", ["--output-tolerance=logits:atol=1e-2,rtol=0"], "fail"),
    ("int8_offset_dominated", "OFFSET:unet", None, "int8 (Q/DQ) model of an output = logits + 100: varying part x0.5 (wrong), offset dominates SQNR", [], "fail"),
    ("fp16_overflow_real_range", f"{Z}/mobilenetv3_ts.onnx", lambda p: fp16_overflow_above(p, 2.0), "fp16 prescale: inputs above 2.0 overflow to inf (real data reaches 2.64; random 0..1 never)", [], "fail"),
    ("fp16_overflow_random_only", f"{Z}/mobilenetv3_ts.onnx", lambda p: fp16_overflow_above(p, 2.0), "same model judged on random 0..1 feeds (no --inputs)", ["NOINPUTS", "--input-shape=input:2x3x96x96"], "note"),
]


def build_all():
    OUT.mkdir(parents=True, exist_ok=True)
    index = []
    for fid, original, builder, text, extra, right in FAULTS:
        target = OUT / f"{fid}.onnx"
        if fid == "if_else_branch":
            model = if_branch(original, untaken_branch(original))
        elif fid == "int8_offset_dominated":
            original = str(OUT / "unet_offset100.onnx")
            onnx.save(offset(f"{Z}/unet_ts.onnx", "logits", 100.0), original)
            model = qdq_wrong_variation(f"{Z}/unet_ts.onnx", "logits", 100.0, 0.5)
        else:
            model = builder(original)
        onnx.checker.check_model(model)
        onnx.save(model, target)
        data = original.replace(".onnx", ".npz") if "unet_offset" not in original else f"{Z}/unet_ts.npz"
        data = str(OUT / "if_else_branch.npz") if fid == "if_else_branch" else data
        index.append({"id": fid, "original": original, "derived": str(target), "fault": text, "extra": extra, "right": right, "inputs": data})
    (OUT / "index.json").write_text(json.dumps(index, indent=1))


def untaken_branch(path):
    import onnxruntime as ort

    m = load(path)
    probe = copy.deepcopy(m)
    probe.graph.output.append(helper.make_tensor_value_info("/Greater_output_0", TensorProto.BOOL, []))
    s = ort.InferenceSession(probe.SerializeToString())
    d = np.load(path.replace(".onnx", ".npz"))
    # The zoo's feeds take both branches: the user's data here is the feeds that take `then`.
    keep = [i for i in range(len(d["x"])) if bool(s.run(["/Greater_output_0"], {"x": d["x"][i], "steps": np.asarray(d["steps"][i])})[0])]
    np.savez(OUT / "if_else_branch.npz", x=d["x"][keep], steps=d["steps"][keep])
    return "else_branch"


if __name__ == "__main__":
    build_all()
    shutil.copy(__file__, OUT / "plant.py")
