"""Train the sample models on scikit-learn's digits and export them to ONNX, with their test data.

Run `python models/build.py` (needs the `models` extra: torch and scikit-learn). It refuses to
overwrite existing outputs unless `--force`. Every number in manifest.json is measured on the
exported ONNX files with ONNX Runtime (the project's reference session), never on the torch models.
Seeded and single-threaded so a rebuild gives the same files as far as torch allows.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn.functional as F
from metrics import mask_iou, pixel_accuracy, top1_accuracy  # models/ is on sys.path when run as a script
from networks import (  # models/ is on sys.path when run as a script
    CONVBN_WIDTHS,
    DEAD_EVERY,
    HeatmapNet,
    bn_before_conv,
    bn_gemm_classifier,
    convbn_classifier,
    mobilenetv2_classifier,
    repvgg_classifier,
    slimmed_convbn_classifier,
)
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from onnx2trt_check.fileio import atomic_write_bytes
from onnx2trt_check.runtime import run_model

SEED = 0
OPSET = 17
IMAGE_SIZE = 16  # digits are 8x8; upsampled so two stride-2 stages still leave a 4x4 map
TEST_FRACTION = 0.2  # 360 of the 1797 images
CALIBRATION_SAMPLES = 128
INK_THRESHOLD = 8.0  # a pixel is "ink" above half of the 0..16 scale
MODELS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Split:
    """Upsampled raw digits (0..16, shape [N, 1, 16, 16]) and class labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_split() -> Split:
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32)[:, None])
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False).numpy()
    parts = train_test_split(
        images, digits.target.astype(np.int64), test_size=TEST_FRACTION, random_state=SEED, stratify=digits.target
    )
    return Split(train_x=parts[0], test_x=parts[1], train_y=parts[2], test_y=parts[3])


def heatmap_channels(raw: np.ndarray) -> np.ndarray:
    """Three raw channels on the 0..16 scale: the image, its inverse and a 3x3 blur, so the input
    normalization has a different mean and std per channel."""
    blurred = F.avg_pool2d(torch.from_numpy(raw), 3, stride=1, padding=1, count_include_pad=False).numpy()
    return np.concatenate([raw, 16.0 - raw, blurred], axis=1).astype(np.float32)


def ink_mask(raw: np.ndarray) -> np.ndarray:
    return (raw > INK_THRESHOLD).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Networks


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, loss_fn, *, epochs: int, lr: float = 3e-3) -> None:
    """Adam with cosine decay on shuffled mini-batches of 64."""
    generator = torch.Generator().manual_seed(SEED)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = -(-len(inputs) // 64)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs), generator=generator).split(64):
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), targets[batch]).backward()
            optimizer.step()
            schedule.step()
    model.eval()


def export(model: nn.Module, example: np.ndarray, *, input_name: str, output_name: str, dynamic_batch: bool) -> bytes:
    """TorchScript exporter (the dynamo one needs onnxscript). TrainingMode.PRESERVE on an eval
    model skips the eval peephole that fuses Conv+BN, so BatchNormalization stays in the graph."""
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.from_numpy(example),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=[output_name], dynamic_axes=axes,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    model_proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model_proto, full_check=True)
    if any(node.op_type == "Identity" for node in model_proto.graph.node):
        raise RuntimeError("the export shares equal parameters through Identity nodes; give them distinct values")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# Measurements on the exported ONNX file (ONNX Runtime reference session)


def ort_outputs(model_bytes: bytes, feeds: np.ndarray, input_name: str) -> np.ndarray:
    results = run_model(model_bytes, ({input_name: sample} for sample in feeds))
    return np.stack([next(iter(result.values())) for result in results])


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def value_infos(values) -> list[dict]:
    def dim(d):
        return d.dim_param if d.HasField("dim_param") else d.dim_value

    return [{"name": v.name, "shape": [dim(d) for d in v.type.tensor_type.shape.dim],
             "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name} for v in values]


def folded_range_ratios(model: onnx.ModelProto) -> dict[str, dict]:
    """Per Conv followed by BN: max|W * gamma / sqrt(var + eps)| per output channel, and the ratio
    max/min of those ranges over the channels whose range is not zero."""
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    convs = {node.output[0]: node for node in model.graph.node if node.op_type == "Conv"}
    ratios = {}
    for bn in (n for n in model.graph.node if n.op_type == "BatchNormalization" and n.input[0] in convs):
        conv = convs[bn.input[0]]
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = weights[bn.input[1]] / np.sqrt(weights[bn.input[4]] + eps)
        ranges = np.abs(weights[conv.input[1]] * scale[:, None, None, None]).reshape(len(scale), -1).max(axis=1)
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        live = ranges[ranges > 0]
        ratios[conv.name] = {"depthwise": group > 1 and group == len(scale),
                             "zero_range_channels": int(np.sum(ranges == 0)),
                             "range_ratio": round(float(live.max() / live.min()), 3)}
    return ratios


def padding_notes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Pads of every Conv that consumes a BatchNormalization output."""
    bn_outputs = {n.output[0] for n in model.graph.node if n.op_type == "BatchNormalization"}
    return {n.name: list(next((a.ints for a in n.attribute if a.name == "pads"), [0, 0, 0, 0]))
            for n in model.graph.node if n.op_type == "Conv" and n.input[0] in bn_outputs}


# ----------------------------------------------------------------------------------------------
# Files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Like np.savez_compressed, but with fixed zip timestamps: np.savez stamps the current time,
    which would change the file (and its recorded hash) on every rebuild."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# The sample models


def repvgg_blocks(model: onnx.ModelProto) -> list[dict]:
    """Per ReLU: the branches summed before it (3x3/1x1 conv+BN or identity BN) and the stride."""
    producers = {out: node for node in model.graph.node for out in node.output}

    def leaves(name: str) -> list[onnx.NodeProto]:
        node = producers[name]
        return [leaf for i in node.input for leaf in leaves(i)] if node.op_type == "Add" else [node]

    def describe(bn: onnx.NodeProto) -> str:
        conv = producers.get(bn.input[0])
        if conv is None or conv.op_type != "Conv":
            return "identity_bn"
        kernel = next(a.ints for a in conv.attribute if a.name == "kernel_shape")
        return f"conv{kernel[0]}x{kernel[1]}_bn"

    def stride(bns: list[onnx.NodeProto]) -> int:
        conv = producers[bns[0].input[0]]
        return next(a.ints for a in conv.attribute if a.name == "strides")[0]

    relus = [n for n in model.graph.node if n.op_type == "Relu" and producers[n.input[0]].op_type == "Add"]
    return [{"relu": relu.name, "stride": stride(bns), "branches": [describe(bn) for bn in bns]}
            for relu in relus for bns in [leaves(relu.input[0])]]


def heatmap_notes(model: onnx.ModelProto) -> dict:
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    return {"channels": ["raw 0..16", "16 - raw", "3x3 box blur of raw"], "ink_threshold": INK_THRESHOLD,
            "mean": [round(float(v), 6) for v in weights["mean"].ravel()],
            "std": [round(float(v), 6) for v in weights["std"].ravel()]}


def mobilenet_notes(model: onnx.ModelProto) -> dict:
    ratios = folded_range_ratios(model)
    return {"dead_expand_channel_share": 1 / DEAD_EVERY,
            "min_depthwise_range_ratio": min(r["range_ratio"] for r in ratios.values() if r["depthwise"]),
            "folded_range_ratio": ratios}


def bn_before_conv_notes(model: onnx.ModelProto) -> dict:
    pads = padding_notes(model)
    return {"convs_after_bn_pads": pads,
            "padded_conv": next(name for name, p in pads.items() if any(p)),
            "unpadded_conv": next(name for name, p in pads.items() if not any(p))}


def pruned_notes(model: onnx.ModelProto) -> dict:
    weights = {init.name: init for init in model.graph.initializer}
    channels = [list(weights[n.input[1]].dims)[0] for n in model.graph.node if n.op_type == "Conv"]
    return {"original": "convbn_classifier", "method": f"network slimming: each conv block keeps {PRUNE_KEEP:.0%} of its "
            "channels, those with the largest |BN gamma|, then fine-tuning", "conv_channels": channels,
            "original_conv_channels": list(CONVBN_WIDTHS)}


def bn_positions(model: onnx.ModelProto) -> dict[str, str]:
    """Per BatchNormalization: the op before it and the op after it."""
    made_by = {out: node for node in model.graph.node for out in node.output}
    read_by = {i: node for node in model.graph.node for i in node.input}
    return {bn.name: f"{made_by[bn.input[0]].op_type} -> BN -> {read_by[bn.output[0]].op_type if bn.output[0] in read_by else 'output'}"
            for bn in model.graph.node if bn.op_type == "BatchNormalization"}


@dataclass(frozen=True)
class Sample:
    name: str
    task: str  # "classification" (10 logits) or "heatmap" (per-pixel ink probability)
    purpose: str
    network: Callable[[np.ndarray], nn.Module]  # gets the training inputs (for normalization constants)
    epochs: int
    notes: Callable[[onnx.ModelProto], dict] = lambda model: {}
    dynamic_batch: bool = False
    # A derived sample starts from `parent` as exported (its ONNX weights loaded into its network:
    # derive(parent) -> network), then trains `epochs` more at `lr` (fine-tuning).
    parent: str | None = None
    derive: Callable[[nn.Module], nn.Module] | None = None
    lr: float = 3e-3


PRUNE_KEEP = 0.5


SAMPLES = (
    Sample("convbn_classifier", "classification", "Conv+BN folding; dynamic batch dim",
           lambda x: convbn_classifier(), epochs=12, dynamic_batch=True,
           notes=lambda model: {"dynamic_batch_dim": "batch"}),
    Sample("repvgg_classifier", "classification", "RepVGG branch merging (3x3+1x1+identity BN into one conv)",
           lambda x: repvgg_classifier(), epochs=10, notes=lambda model: {"blocks": repvgg_blocks(model)}),
    Sample("mobilenetv2_classifier", "classification",
           "depthwise convs, ReLU6 as Clip, residual Adds; wide per-channel ranges that break per-tensor int8",
           lambda x: mobilenetv2_classifier(), epochs=12, notes=mobilenet_notes),
    Sample("bn_before_conv", "classification", "folding a BN forward into the next conv, padded and unpadded",
           lambda x: bn_before_conv(), epochs=10, notes=bn_before_conv_notes),
    Sample("heatmap_sigmoid", "heatmap", "input normalization (Sub/Div) folding; Sigmoid output heatmap",
           lambda x: HeatmapNet(x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))), epochs=6, notes=heatmap_notes),
    Sample("bn_gemm_classifier", "classification",
           "BN folds beyond Conv: BN across a MaxPool, BN before Flatten -> Gemm, BN after Gemm",
           lambda x: bn_gemm_classifier(), epochs=10, notes=lambda model: {"bn_positions": bn_positions(model)}),
    Sample("convbn_classifier_pruned", "classification",
           "a derived model: convbn_classifier pruned to half its channels, checked against it with --reference-model",
           None, epochs=4, dynamic_batch=True, notes=pruned_notes, parent="convbn_classifier",
           derive=lambda parent: slimmed_convbn_classifier(parent, PRUNE_KEEP)[0], lr=1e-3),
)
INPUT_NAME = "input"
OUTPUT_NAMES = {"classification": "logits", "heatmap": "heatmap"}


def task_data(task: str, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train inputs, train targets, test inputs, test labels) for a task."""
    if task == "heatmap":
        train_x, test_x = split.train_x, split.test_x
        return heatmap_channels(train_x), ink_mask(train_x), heatmap_channels(test_x), ink_mask(test_x)
    return split.train_x / 16.0, split.train_y, split.test_x / 16.0, split.test_y


def loss_for(task: str):
    return F.binary_cross_entropy if task == "heatmap" else F.cross_entropy


def metrics_for(task: str, outputs: np.ndarray, labels: np.ndarray) -> tuple[dict, dict]:
    """The primary metric and any secondary ones, measured on ONNX Runtime outputs."""
    if task == "heatmap":
        return ({"name": "pixel_accuracy_at_0.5", "value": pixel_accuracy(outputs, labels)},
                {"iou_at_0.5": mask_iou(outputs, labels)})
    return {"name": "top1_accuracy", "value": top1_accuracy(outputs, labels)}, {}


def exported_network(sample: Sample, model_bytes: bytes, train_x: np.ndarray) -> nn.Module:
    """`sample`'s network with the weights of its exported ONNX file (the exporter names the
    initializers after the state_dict; BN's num_batches_tracked is not exported and not needed)."""
    network = sample.network(train_x).eval()
    weights = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy()) for t in onnx.load_from_string(model_bytes).graph.initializer}
    missing, unexpected = network.load_state_dict(weights, strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise RuntimeError(f"{sample.name}.onnx does not fit its network: missing {missing}, unexpected {unexpected}")
    return network


def starting_network(sample: Sample, split: Split, exported: Callable[[str], bytes]) -> nn.Module:
    """A fresh network, or for a derived sample its parent as exported, derived."""
    if sample.parent is None:
        return sample.network(task_data(sample.task, split)[0])
    parent = next(s for s in SAMPLES if s.name == sample.parent)
    return sample.derive(exported_network(parent, exported(f"{parent.name}.onnx"), task_data(parent.task, split)[0]))


def build_sample(sample: Sample, split: Split, calibration_indices: np.ndarray,
                 exported: Callable[[str], bytes]) -> tuple[dict[str, bytes], dict]:
    """Train, export and measure one sample: its files (name -> bytes) and its manifest entry.
    `exported(file)` gives a file of this build or of the output folder (a derived sample's parent)."""
    train_x, train_y, test_x, test_y = task_data(sample.task, split)
    torch.manual_seed(SEED)
    model = starting_network(sample, split, exported)
    train(model, train_x, train_y, loss_for(sample.task), epochs=sample.epochs, lr=sample.lr)
    output_name = OUTPUT_NAMES[sample.task]
    model_bytes = export(model, test_x[:1], input_name=INPUT_NAME, output_name=output_name,
                         dynamic_batch=sample.dynamic_batch)
    feeds, labels = test_x[:, None], (test_y[:, None].astype(np.uint8) if sample.task == "heatmap" else test_y)
    metric, extra = metrics_for(sample.task, ort_outputs(model_bytes, feeds, INPUT_NAME), labels)
    files = {f"{sample.name}.onnx": model_bytes, f"{sample.name}.npz": npz_bytes({INPUT_NAME: feeds}),
             f"{sample.name}.labels.npy": npy_bytes(labels),
             f"{sample.name}.calib.npz": npz_bytes({INPUT_NAME: train_x[calibration_indices][:, None]})}
    return files, manifest_entry(sample, files, metric, extra, len(feeds), len(calibration_indices))


def manifest_entry(sample: Sample, files: dict[str, bytes], metric: dict, extra: dict, samples: int,
                   calibration_samples: int) -> dict:
    name, model_bytes = sample.name, files[f"{sample.name}.onnx"]
    model = onnx.load_from_string(model_bytes)
    return {"file": f"{name}.onnx", "sha256": sha256(model_bytes), "size_bytes": len(model_bytes),
             "task": sample.task, "purpose": sample.purpose, "opset": OPSET,
             "batch": "dynamic" if sample.dynamic_batch else "static",
             "inputs": value_infos(model.graph.input), "outputs": value_infos(model.graph.output),
             "data": {"inputs": f"{name}.npz", "labels": f"{name}.labels.npy", "calibration": f"{name}.calib.npz",
                      "samples": samples, "calibration_samples": calibration_samples,
                      "sha256": {file: sha256(files[file]) for file in sorted(files) if not file.endswith(".onnx")}},
             "metric": metric, "extra_metrics": extra, "op_counts": op_counts(model), "notes": sample.notes(model)}


def manifest(entries: dict[str, dict], split: Split) -> dict:
    return {
        "dataset": {"source": "sklearn.datasets.load_digits", "image_size": [IMAGE_SIZE, IMAGE_SIZE],
                    "upsampling": "bilinear from 8x8", "split": f"train_test_split(test_size={TEST_FRACTION}, "
                    f"random_state={SEED}, stratify=target)", "train_samples": len(split.train_x),
                    "test_samples": len(split.test_x)},
        "layout": "each .npz key is an ONNX input name and holds [N, *input shape]: one feed per leading "
                  "slice; labels[i] (class index, or mask shaped like the output) belongs to feed i",
        "generator": {"script": "models/build.py", "seed": SEED, "torch": torch.__version__.split("+")[0],
                      "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "models": entries,
    }


def planned_files(samples=SAMPLES) -> list[str]:
    suffixes = (".onnx", ".npz", ".labels.npy", ".calib.npz")
    return [sample.name + suffix for sample in samples for suffix in suffixes] + ["manifest.json"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--output-dir", type=Path, default=MODELS_DIR, help="defaults to the models/ folder")
    parser.add_argument("--only", action="append", choices=[s.name for s in SAMPLES], metavar="NAME",
                        help="build only this sample (repeatable); the other samples' files and manifest entries stay")
    return parser.parse_args(argv)


def kept_entries(args: argparse.Namespace, selected) -> dict[str, dict]:
    """With --only: the manifest entries of the samples not rebuilt, from the output folder."""
    if not args.only:
        return {}
    path = args.output_dir / "manifest.json"
    entries = json.loads(path.read_text())["models"] if path.exists() else {}
    return {name: entry for name, entry in entries.items() if name not in {s.name for s in selected}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [s for s in SAMPLES if not args.only or s.name in args.only]
    existing = [name for name in planned_files(selected) if (args.output_dir / name).exists()]
    if existing and not args.force:
        print(f"build.py: {len(existing)} outputs exist in {args.output_dir} (e.g. {existing[0]}); "
              "pass --force to overwrite", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # reduction order changes with the thread count; one thread reproduces
    torch.use_deterministic_algorithms(True)
    split = load_split()
    rng = np.random.default_rng(SEED)
    calibration_indices = np.sort(rng.choice(len(split.train_x), CALIBRATION_SAMPLES, replace=False))
    files, entries = {}, kept_entries(args, selected)
    for sample in selected:
        sample_files, entries[sample.name] = build_sample(
            sample, split, calibration_indices, lambda file: files.get(file) or (args.output_dir / file).read_bytes())
        files.update(sample_files)
        metric = entries[sample.name]["metric"]
        print(f"{sample.name}: {metric['name']} = {metric['value']:.4f}")
    order = [s.name for s in SAMPLES]
    entries = dict(sorted(entries.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    files["manifest.json"] = (json.dumps(manifest(entries, split), indent=2) + "\n").encode()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(args.output_dir / name, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
