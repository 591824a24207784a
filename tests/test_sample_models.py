"""The committed sample models in models/: files, hashes, graph structure and metrics are what
models/manifest.json says. Reads committed files only (no torch, no scikit-learn)."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import numpy_helper

from onnx2trt_check.runtime import run_model

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
sys.path.insert(0, str(MODELS_DIR))
from metrics import mask_iou, pixel_accuracy, top1_accuracy  # noqa: E402 - models/ is not a package

MANIFEST = json.loads((MODELS_DIR / "manifest.json").read_text())
ENTRIES = MANIFEST["models"]
NAMES = list(ENTRIES)
SAMPLE_NAMES = {"convbn_classifier", "repvgg_classifier", "mobilenetv2_classifier", "bn_before_conv", "heatmap_sigmoid",
                "convbn_classifier_pruned", "bn_gemm_classifier"}
MAX_MODEL_BYTES = 2 * 1024 * 1024
# A near-tie can flip across ONNX Runtime builds; more than this many flips is a real change.
ALLOWED_FLIPS = {"top1_accuracy": 1, "pixel_accuracy_at_0.5": 10}


# ---- reading the committed files --------------------------------------------------------------


@functools.cache
def load(name: str) -> onnx.ModelProto:
    return onnx.load(MODELS_DIR / ENTRIES[name]["file"])


@functools.cache
def committed_data(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    data = ENTRIES[name]["data"]
    with np.load(MODELS_DIR / data["inputs"]) as archive:
        inputs = {key: archive[key] for key in archive.files}
    return inputs, np.load(MODELS_DIR / data["labels"])


@functools.cache
def ort_outputs(name: str) -> np.ndarray:
    inputs, _ = committed_data(name)
    feeds = [{key: array[i] for key, array in inputs.items()} for i in range(len(next(iter(inputs.values()))))]
    return np.stack([next(iter(result.values())) for result in run_model(MODELS_DIR / ENTRIES[name]["file"], feeds)])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- graph helpers ----------------------------------------------------------------------------


def attribute(node: onnx.NodeProto, name: str, default=None):
    found = [a for a in node.attribute if a.name == name]
    return onnx.helper.get_attribute_value(found[0]) if found else default


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if tensor in node.input]


def constant(model: onnx.ModelProto, tensor: str) -> np.ndarray:
    """An initializer or the value of a Constant node."""
    for init in model.graph.initializer:
        if init.name == tensor:
            return numpy_helper.to_array(init)
    node = producers(model)[tensor]
    assert node.op_type == "Constant", f"{tensor} is computed by {node.op_type}, not a constant"
    return numpy_helper.to_array(attribute(node, "value"))


def nodes(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if node.op_type == op_type]


# ---- the math the checks use ------------------------------------------------------------------


def folded_ranges(weight: np.ndarray, gamma: np.ndarray, var: np.ndarray, eps: float) -> np.ndarray:
    """max |W * gamma / sqrt(var + eps)| per output channel: the weight range after BN folding."""
    scale = gamma / np.sqrt(var + eps)
    return np.abs(weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).reshape(len(scale), -1).max(axis=1)


channels = st.integers(1, 6)


@given(channels.flatmap(lambda c: st.tuples(
    hnp.arrays(np.float64, (c, 2, 3, 3), elements=st.floats(-4, 4)),
    hnp.arrays(np.float64, c, elements=st.floats(0.01, 10)),
    hnp.arrays(np.float64, c, elements=st.floats(0.0, 10)),
    st.integers(0, c - 1), st.floats(0.1, 10))))
def test_folded_range_scales_with_gamma_and_inverse_std(case):
    weight, gamma, var, channel, factor = case
    base = folded_ranges(weight, gamma, var, 1e-5)
    scaled_gamma = gamma.copy()
    scaled_gamma[channel] *= factor
    expected = base.copy()
    expected[channel] *= factor
    # atol: a subnormal range (a weight of 5e-324 times a scale) has few significant bits left,
    # so it rounds differently after the scaling (4.69e-321 vs 4.684e-321, found by hypothesis).
    np.testing.assert_allclose(folded_ranges(weight, scaled_gamma, var, 1e-5), expected, rtol=1e-9, atol=1e-300)
    # Four times the (var + eps) halves every range: the sqrt is there.
    np.testing.assert_allclose(folded_ranges(weight, gamma, 4 * var + 3e-5, 1e-5), base / 2, rtol=1e-9, atol=1e-300)


@given(hnp.arrays(np.int64, st.integers(1, 50), elements=st.integers(0, 9)), st.data())
def test_top1_accuracy_counts_exactly_the_wrong_argmaxes(labels, data):
    wrong = data.draw(hnp.arrays(np.bool_, labels.shape))
    predicted = np.where(wrong, (labels + 1) % 10, labels)
    logits = np.eye(10)[predicted] * 3.0 - 1.0
    assert top1_accuracy(logits, labels) == pytest.approx(1 - wrong.mean())


@given(hnp.arrays(np.bool_, (2, 4, 4)))
def test_pixel_accuracy_and_iou_of_a_mask_against_itself_and_its_complement(mask):
    heatmap = np.where(mask, 0.9, 0.1)
    assert pixel_accuracy(heatmap, mask.astype(np.uint8)) == 1.0
    assert pixel_accuracy(1 - heatmap, mask.astype(np.uint8)) == 0.0
    if mask.any():
        assert mask_iou(heatmap, mask.astype(np.uint8)) == 1.0
        assert mask_iou(1 - heatmap, mask.astype(np.uint8)) == 0.0


# ---- files, hashes, checker -------------------------------------------------------------------


def test_manifest_lists_exactly_the_sample_models():
    assert set(NAMES) == SAMPLE_NAMES
    batches = Counter(entry["batch"] for entry in ENTRIES.values())
    assert batches["dynamic"] >= 1 and batches["static"] >= 1


@pytest.mark.parametrize("name", NAMES)
def test_model_file_is_small_and_matches_its_hash(name):
    path = MODELS_DIR / ENTRIES[name]["file"]
    assert path.stat().st_size < MAX_MODEL_BYTES
    assert sha256(path) == ENTRIES[name]["sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_model_passes_the_onnx_checker_at_opset_17(name):
    onnx.checker.check_model(load(name), full_check=True)
    assert [o.version for o in load(name).opset_import if o.domain in ("", "ai.onnx")] == [17]


@pytest.mark.parametrize("name", NAMES)
def test_data_files_match_their_hashes(name):
    for file, digest in ENTRIES[name]["data"]["sha256"].items():
        assert sha256(MODELS_DIR / file) == digest, file


@pytest.mark.parametrize("name", NAMES)
def test_op_counts_inputs_and_outputs_match_the_manifest(name):
    model, entry = load(name), ENTRIES[name]
    assert dict(Counter(node.op_type for node in model.graph.node)) == entry["op_counts"]
    for values, recorded in ((model.graph.input, entry["inputs"]), (model.graph.output, entry["outputs"])):
        shapes = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]
        assert [v.name for v in values] == [r["name"] for r in recorded]
        assert shapes == [r["shape"] for r in recorded]
        assert all(r["dtype"] == "float32" for r in recorded)
    first_dim = entry["inputs"][0]["shape"][0]
    assert first_dim == ("batch" if entry["batch"] == "dynamic" else 1)


def feed_shape_fits(slice_shape: tuple[int, ...], declared: list) -> bool:
    return len(slice_shape) == len(declared) and all(
        isinstance(d, str) or d == s for s, d in zip(slice_shape, declared, strict=True)
    )


@pytest.mark.parametrize("name", NAMES)
def test_data_files_hold_one_feed_per_slice(name):
    entry = ENTRIES[name]
    inputs, labels = committed_data(name)
    with np.load(MODELS_DIR / entry["data"]["calibration"]) as archive:
        calibration = {key: archive[key] for key in archive.files}
    declared = {i["name"]: i["shape"] for i in entry["inputs"]}
    for arrays, count in ((inputs, entry["data"]["samples"]), (calibration, entry["data"]["calibration_samples"])):
        assert set(arrays) == set(declared)
        for key, array in arrays.items():
            assert array.dtype == np.float32 and array.shape[0] == count
            assert feed_shape_fits(array.shape[1:], declared[key]), (key, array.shape)
    assert 100 <= entry["data"]["samples"] <= 360 and 64 <= entry["data"]["calibration_samples"] <= 128
    assert len(labels) == entry["data"]["samples"]


# ---- metrics reproduce with ONNX Runtime -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_recorded_metric_reproduces_with_onnxruntime(name):
    entry = ENTRIES[name]
    outputs, (_, labels) = ort_outputs(name), committed_data(name)
    if entry["task"] == "heatmap":
        assert outputs.shape == labels.shape
        measured, units = pixel_accuracy(outputs, labels), labels.size
        assert mask_iou(outputs, labels) == pytest.approx(entry["extra_metrics"]["iou_at_0.5"], abs=0.002)
    else:
        measured, units = top1_accuracy(outputs, labels), len(labels)
    metric = entry["metric"]
    assert abs(measured - metric["value"]) <= ALLOWED_FLIPS[metric["name"]] / units + 1e-12, (measured, metric)
    assert metric["value"] > 0.9


# ---- the structure each model exists for -------------------------------------------------------


def test_convbn_keeps_a_batchnorm_after_every_conv():
    model = load("convbn_classifier")
    for conv in nodes(model, "Conv"):
        assert [n.op_type for n in consumers(model, conv.output[0])] == ["BatchNormalization"], conv.name
    assert producers(model)[model.graph.output[0].name].op_type == "Gemm"


def repvgg_blocks(model: onnx.ModelProto) -> list[tuple[int, list[str]]]:
    """(stride, sorted branch kinds) of every ReLU fed by a sum of BN branches."""
    made_by = producers(model)

    def branches(tensor: str) -> list[onnx.NodeProto]:
        node = made_by[tensor]
        return [b for i in node.input for b in branches(i)] if node.op_type == "Add" else [node]

    def kind(bn: onnx.NodeProto) -> tuple[int, str]:
        source = made_by.get(bn.input[0])
        if source is None or source.op_type != "Conv":
            return 1, "identity_bn"
        kernel = attribute(source, "kernel_shape")
        return attribute(source, "strides")[0], f"conv{kernel[0]}x{kernel[1]}_bn"

    blocks = []
    for relu in (r for r in nodes(model, "Relu") if made_by[r.input[0]].op_type == "Add"):
        leaves = branches(relu.input[0])
        assert all(leaf.op_type == "BatchNormalization" for leaf in leaves), relu.name
        kinds = [kind(bn) for bn in leaves]
        blocks.append((max(s for s, _ in kinds), sorted(k for _, k in kinds)))
    return blocks


def test_repvgg_blocks_keep_their_train_time_branches():
    blocks = repvgg_blocks(load("repvgg_classifier"))
    assert (1, ["conv1x1_bn", "conv3x3_bn", "identity_bn"]) in blocks
    assert (2, ["conv1x1_bn", "conv3x3_bn"]) in blocks
    recorded = ENTRIES["repvgg_classifier"]["notes"]["blocks"]
    assert blocks == [(b["stride"], sorted(b["branches"])) for b in recorded]


def test_repvgg_identity_branch_reads_the_block_input():
    model = load("repvgg_classifier")
    convs_inputs = {conv.input[0] for conv in nodes(model, "Conv")}
    identity_bns = [bn for bn in nodes(model, "BatchNormalization") if producers(model)[bn.input[0]].op_type == "Relu"]
    assert identity_bns and all(bn.input[0] in convs_inputs for bn in identity_bns)


def test_mobilenet_has_depthwise_convs_relu6_clips_and_residual_adds():
    model = load("mobilenetv2_classifier")
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    depthwise = [c for c in nodes(model, "Conv") if attribute(c, "group", 1) == weights[c.input[1]].shape[0] > 1]
    assert len(depthwise) >= 3 and all(weights[c.input[1]].shape[1] == 1 for c in depthwise)
    clips = nodes(model, "Clip")
    assert clips and all((constant(model, c.input[1]), constant(model, c.input[2])) == (0, 6) for c in clips)
    adds = nodes(model, "Add")
    assert len(adds) >= 2
    for add in adds:  # project BN output + the block input
        assert "BatchNormalization" in [producers(model)[i].op_type for i in add.input], add.name


def test_mobilenet_depthwise_folded_ranges_spread_as_recorded():
    model = load("mobilenetv2_classifier")
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    recorded = ENTRIES["mobilenetv2_classifier"]["notes"]["folded_range_ratio"]
    for bn in nodes(model, "BatchNormalization"):
        conv = producers(model)[bn.input[0]]
        ranges = folded_ranges(weights[conv.input[1]], weights[bn.input[1]], weights[bn.input[4]],
                               attribute(bn, "epsilon", 1e-5))
        live = ranges[ranges > 0]
        assert live.max() / live.min() == pytest.approx(recorded[conv.name]["range_ratio"], rel=1e-3), conv.name
    depthwise_ratios = [r["range_ratio"] for r in recorded.values() if r["depthwise"]]
    assert len(depthwise_ratios) >= 3 and min(depthwise_ratios) >= 50


def test_bn_before_conv_feeds_a_padded_and_an_unpadded_conv():
    model = load("bn_before_conv")
    pads = {}
    for bn in nodes(model, "BatchNormalization"):
        (conv,) = consumers(model, bn.output[0])
        assert conv.op_type == "Conv" and conv.input[0] == bn.output[0]
        pads[conv.name] = list(attribute(conv, "pads", [0, 0, 0, 0]))
    notes = ENTRIES["bn_before_conv"]["notes"]
    assert pads == notes["convs_after_bn_pads"]
    assert any(pads[notes["padded_conv"]]) and not any(pads[notes["unpadded_conv"]])


def test_heatmap_starts_with_per_channel_sub_div_and_ends_with_sigmoid():
    model = load("heatmap_sigmoid")
    (sub,) = consumers(model, model.graph.input[0].name)
    (div,) = consumers(model, sub.output[0])
    assert (sub.op_type, div.op_type) == ("Sub", "Div") and sub.input[0] == model.graph.input[0].name
    mean, std = constant(model, sub.input[1]), constant(model, div.input[1])
    assert mean.shape == std.shape == (1, 3, 1, 1) and np.all(std > 0) and len(set(mean.ravel())) == 3
    notes = ENTRIES["heatmap_sigmoid"]["notes"]
    np.testing.assert_allclose(mean.ravel(), notes["mean"], atol=1e-5)
    np.testing.assert_allclose(std.ravel(), notes["std"], atol=1e-5)
    assert {n.op_type for n in consumers(model, div.output[0])} == {"Conv"}
    assert producers(model)[model.graph.output[0].name].op_type == "Sigmoid"


def test_pruned_classifier_is_the_original_layout_with_half_the_channels():
    pruned, original = load("convbn_classifier_pruned"), load("convbn_classifier")
    notes = ENTRIES["convbn_classifier_pruned"]["notes"]
    assert notes["original"] == "convbn_classifier"
    assert [n.op_type for n in pruned.graph.node] == [n.op_type for n in original.graph.node]
    widths = {name: [numpy_helper.to_array(i).shape[0] for i in m.graph.initializer if i.name.endswith(".0.weight") and i.dims[-1] == 3]
              for name, m in (("pruned", pruned), ("original", original))}
    assert widths["pruned"] == notes["conv_channels"] and widths["original"] == notes["original_conv_channels"]
    assert [2 * w for w in widths["pruned"]] == widths["original"]
    assert ENTRIES["convbn_classifier_pruned"]["metric"]["value"] < ENTRIES["convbn_classifier"]["metric"]["value"]


def test_bn_gemm_classifier_holds_a_bn_after_a_pool_before_flatten_gemm_and_after_gemm():
    model = load("bn_gemm_classifier")
    made_by = producers(model)
    around = {bn.name: (made_by[bn.input[0]].op_type, [n.op_type for n in consumers(model, bn.output[0])])
              for bn in nodes(model, "BatchNormalization")}
    assert sorted(around.values()) == [("Gemm", []), ("GlobalAveragePool", ["Flatten"]), ("MaxPool", ["Relu"])]
    assert made_by[nodes(model, "MaxPool")[0].input[0]].op_type == "Conv"
    assert {name: f"{before} -> BN -> {after[0] if after else 'output'}" for name, (before, after) in around.items()} == \
        ENTRIES["bn_gemm_classifier"]["notes"]["bn_positions"]
