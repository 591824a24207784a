"""Build a zoo of foreign ONNX models (ones onnx2trt_check was not built beside) with their data.

    python benchmarks/zoo.py [FOLDER] [--only NAME ...]      # FOLDER defaults to /work/zoo

Needs torch==2.13.0 (CPU), transformers, skl2onnx, scikit-learn and onnxscript, which are never
runtime dependencies of onnx2trt_check: install them in a separate environment
(`pip install torch==2.13.0 transformers skl2onnx scikit-learn onnxscript`). Nothing is downloaded:
every network has random weights (transformers models are built from tiny configs with a wider
initializer range, so outputs depend on the input), BatchNorm statistics are measured by a forward pass
over synthetic images (as a trained net's are, so activations stay normalized and the logits vary
with the input) under random affine parameters, so folds change numbers; the data are synthetic but shaped like real
data (smooth images normalized like ImageNet, padded token ids below the vocabulary size, smooth
sequences, the iris table bundled with scikit-learn).

Per model `<name>.onnx`: `<name>.npz` (keys = input names, leading axis = feeds) and, for CNN and
transformer models, `<name>.calib.npz` for int8 calibration. Models are exported with both torch
exporters where that works (`_ts` = TorchScript exporter, dynamo=False; `_dynamo` = dynamo=True); an
export that fails is reported and left out. README.md in FOLDER lists every model with its inputs,
read back from the written files. Files in FOLDER with the same names are replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

SEED = 0
TS_OPSET = 17
DYNAMO_OPSET = 18
TEST_FEEDS = 16
CALIB_FEEDS = 64
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
MAX_BYTES = 20 * 2**20
EXPORT_FAILURES: list[str] = []  # exports that failed, listed in README.md


@dataclass
class Entry:
    """One model of the zoo as README.md describes it."""

    name: str
    what: str
    exporter: str
    notes: str = ""
    files: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- data ----------------------------


def rng(tag: str) -> np.random.Generator:
    return np.random.default_rng([SEED, sum(map(ord, tag))])


def images(count: int, shape: tuple[int, ...], tag: str) -> np.ndarray:
    """Smooth images (low-resolution noise upsampled, plus grain) in [0, 1], normalized like ImageNet:
    [count, *shape] with shape = (batch, 3, H, W)."""
    g = rng(tag)
    batch, channels, height, width = shape
    low = torch.from_numpy(g.random((count * batch, channels, 4, 4), dtype=np.float32))
    smooth = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).numpy()
    pixels = np.clip(smooth + 0.05 * g.standard_normal(smooth.shape, dtype=np.float32), 0, 1)
    normalized = (pixels - IMAGENET_MEAN[:channels]) / IMAGENET_STD[:channels]
    return normalized.reshape(count, *shape).astype(np.float32)


def tokens(count: int, batch: int, length: int, vocab: int, tag: str) -> dict[str, np.ndarray]:
    """Padded token ids in [1, vocab) (0 = padding) and their attention mask, [count, batch, length]."""
    g = rng(tag)
    ids = g.integers(1, vocab, size=(count, batch, length), dtype=np.int64)
    lengths = g.integers(length // 2, length + 1, size=(count, batch, 1))
    mask = (np.arange(length) < lengths).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def sequences(count: int, shape: tuple[int, int, int], tag: str) -> np.ndarray:
    """Sums of sinusoids with random frequency and phase per feature, plus noise: [count, *shape]."""
    g = rng(tag)
    batch, steps, features = shape
    t = np.arange(steps, dtype=np.float32)[:, None]
    freq = g.uniform(0.05, 0.5, size=(count, batch, 1, features))
    phase = g.uniform(0, 2 * np.pi, size=(count, batch, 1, features))
    return (np.sin(freq * t + phase) + 0.1 * g.standard_normal((count, batch, steps, features))).astype(np.float32)


def save_npz(folder: Path, name: str, arrays: dict[str, np.ndarray]) -> str:
    np.savez(folder / name, **arrays)
    return name


# ---------------------------------------------------------------- export --------------------------


def randomize_bn(module: nn.Module, seed: int) -> nn.Module:
    """Random affine parameters, so BatchNorm is not an identity (statistics: settle_bn)."""
    g = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            n = bn.num_features
            bn.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            bn.bias.data.copy_(0.2 * torch.randn(n, generator=g))
    return module.eval()


def settle_bn(module: nn.Module, shape: tuple[int, ...], tag: str) -> nn.Module:
    """BatchNorm running statistics of 64 synthetic images (one train-mode pass, cumulative average),
    as training leaves them: without this, random statistics make the logits ignore the input."""
    batchnorms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    x = torch.from_numpy(images(64, shape, tag + ".bnstats").reshape(-1, *shape[1:]))
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        module.train()(x)
    for bn in batchnorms:
        bn.momentum = 0.1
    return module.eval()


def export(module: nn.Module, args: tuple, path: Path, *, dynamo: bool, inputs: list[str], outputs: list[str],
           dynamic: dict[str, dict[int, str]] | None = None, opset: int | None = None) -> None:
    """torch.onnx.export with the exporter's own chatter silenced; the file is checked by onnx."""
    kwargs: dict = dict(input_names=inputs, output_names=outputs, dynamo=dynamo)
    kwargs["opset_version"] = opset or (DYNAMO_OPSET if dynamo else TS_OPSET)
    if dynamic and not dynamo:
        kwargs["dynamic_axes"] = dynamic
    if dynamic and dynamo:  # its dynamic_axes conversion fails on transformers models: give torch.export's own spec
        shapes = tuple({axis: torch.export.Dim.DYNAMIC for axis in dynamic.get(name, {})} for name in inputs)
        kwargs["dynamic_shapes"] = (shapes,) if isinstance(module, HFWrapper) else shapes  # HFWrapper takes *args
    if dynamo:
        kwargs["external_data"] = False
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), **kwargs)
    onnx.checker.check_model(str(path), full_check=True)


def export_both(module: nn.Module, args: tuple, folder: Path, name: str, **kwargs) -> list[tuple[str, str]]:
    """(file stem, exporter) for each exporter that worked; a failure is printed, not raised."""
    done = []
    for suffix, dynamo in (("ts", False), ("dynamo", True)):
        stem = f"{name}_{suffix}"
        try:
            export(module, args, folder / f"{stem}.onnx", dynamo=dynamo, **kwargs)
            done.append((stem, f"torch {torch.__version__.split('+')[0]} dynamo={dynamo}"))
        except Exception as error:  # noqa: BLE001 - an exporter's failure is a finding, not a stop
            reason = next((line for line in str(error).splitlines() if "Unsupported" in line), str(error).splitlines()[0])
            EXPORT_FAILURES.append(f"{stem}: {type(error).__name__}: {reason.strip()[:200]}")
            print(f"  {EXPORT_FAILURES[-1]}")
            (folder / f"{stem}.onnx").unlink(missing_ok=True)
    return done


# ---------------------------------------------------------------- torch networks -------------------


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, gate: type[nn.Module] = nn.Sigmoid, act: type[nn.Module] = nn.SiLU):
        super().__init__()
        squeezed = max(4, channels // 4)
        self.reduce, self.act = nn.Conv2d(channels, squeezed, 1), act()
        self.expand, self.gate = nn.Conv2d(squeezed, channels, 1), gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, squeeze-excitation, 1x1 project, skip when shapes match."""

    def __init__(self, cin: int, cout: int, *, expand: int, k: int, stride: int, act=nn.SiLU, gate=nn.Sigmoid, se=True):
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid, 1, act=act) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, k, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, gate, act if act is not nn.Hardswish else nn.ReLU) if se else nn.Identity()
        self.project = conv_bn(mid, cout, 1, act=None)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.skip else y


def efficientnet_like(classes: int = 10) -> nn.Module:
    blocks = [MBConv(16, 16, expand=1, k=3, stride=1), MBConv(16, 24, expand=4, k=3, stride=2),
              MBConv(24, 24, expand=4, k=3, stride=1), MBConv(24, 40, expand=4, k=5, stride=2),
              MBConv(40, 40, expand=4, k=5, stride=1)]
    return nn.Sequential(conv_bn(3, 16, 3, 2, act=nn.SiLU), *blocks, conv_bn(40, 128, 1, act=nn.SiLU),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, classes))


def mobilenetv3_like(classes: int = 10) -> nn.Module:
    hs, gate = nn.Hardswish, nn.Hardsigmoid
    blocks = [MBConv(16, 16, expand=1, k=3, stride=2, act=nn.ReLU, gate=gate), MBConv(16, 24, expand=4, k=3, stride=2, act=nn.ReLU, se=False),
              MBConv(24, 24, expand=3, k=3, stride=1, act=nn.ReLU, se=False), MBConv(24, 40, expand=4, k=5, stride=2, act=hs, gate=gate),
              MBConv(40, 40, expand=6, k=5, stride=1, act=hs, gate=gate)]
    return nn.Sequential(conv_bn(3, 16, 3, 2, act=hs), *blocks, conv_bn(40, 96, 1, act=hs), nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(96, 256, 1), hs(), nn.Flatten(), nn.Linear(256, classes))


class UNet(nn.Module):
    """Two-level UNet: per-pixel class logits; one bilinear Resize and one ConvTranspose upsampling."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.enc1, self.enc2, self.mid = conv_bn(3, 16), conv_bn(16, 32, stride=2), conv_bn(32, 64, stride=2)
        self.up1 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec1 = nn.Sequential(conv_bn(64, 32), conv_bn(32, 32))
        self.dec2 = nn.Sequential(conv_bn(32 + 16, 16), conv_bn(16, 16))
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d1 = self.dec1(torch.cat([self.up1(self.mid(e2)), e2], 1))
        up = F.interpolate(d1, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.head(self.dec2(torch.cat([up, e1], 1)))


class YoloLike(nn.Module):
    """Three-scale detector (strides 8, 16, 32) with a YOLOv5-style decode tail: sigmoid, grid offsets,
    anchors, Concat over scales -> [batch, boxes, 5 + classes] (cx, cy, w, h, objectness, classes)."""

    ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))

    def __init__(self, classes: int = 3, size: int = 64):
        super().__init__()
        self.no, self.na = 5 + classes, 3
        self.stem = nn.Sequential(conv_bn(3, 16, stride=2, act=nn.SiLU), conv_bn(16, 32, stride=2, act=nn.SiLU))
        self.c3, self.c4, self.c5 = (conv_bn(c, 2 * c, stride=2, act=nn.SiLU) for c in (32, 64, 128))
        self.heads = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in (64, 128, 256))
        for i, stride in enumerate((8, 16, 32)):
            n = size // stride
            yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            self.register_buffer(f"grid{i}", torch.stack([xx, yy], -1).view(1, 1, n, n, 2).float())
            self.register_buffer(f"anchor{i}", torch.tensor(self.ANCHORS[i], dtype=torch.float32).view(1, 3, 1, 1, 2))
        self.strides = (8, 16, 32)

    def forward(self, x):
        p3 = self.c3(self.stem(x))
        p4 = self.c4(p3)
        p5 = self.c5(p4)
        out = []
        for i, p in enumerate((p3, p4, p5)):
            b, _, h, w = p.shape
            y = self.heads[i](p).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            xy = (y[..., :2] * 2 - 0.5 + getattr(self, f"grid{i}")) * self.strides[i]
            wh = (y[..., 2:4] * 2) ** 2 * getattr(self, f"anchor{i}")
            out.append(torch.cat([xy, wh, y[..., 4:]], -1).view(b, -1, self.no))
        return torch.cat(out, 1)


class Recurrent(nn.Module):
    """LSTM or GRU over [batch, time, features]: per-step outputs and class logits of the last step.
    (The dynamo exporter declares the outputs with a fixed time and batch; the TorchScript one keeps them dynamic.)"""

    def __init__(self, cell: type[nn.RNNBase], features: int = 16, hidden: int = 32, classes: int = 5, **kwargs):
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=2, batch_first=True, **kwargs)
        self.head = nn.Linear(hidden * (2 if kwargs.get("bidirectional") else 1), classes)

    def forward(self, x):
        seq, _ = self.rnn(x)
        return seq, self.head(seq[:, -1])


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.short(out) if self.short is not None else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + skip


class PreActResNet(nn.Module):
    """Pre-activation residual net (BN -> ReLU -> Conv), final BN -> ReLU -> pool -> Gemm."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(PreActBlock(16, 16, 1), PreActBlock(16, 32, 2), PreActBlock(32, 64, 2))
        self.bn, self.fc = nn.BatchNorm2d(64), nn.Linear(64, classes)

    def forward(self, x):
        y = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def bn1d_classifier(classes: int = 10) -> nn.Module:
    """Conv features, then Flatten -> BatchNorm1d -> Gemm and Gemm -> BatchNorm1d -> ReLU -> Gemm."""
    return nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 32, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.BatchNorm1d(32), nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, classes))


class NhwcResizeTail(nn.Module):
    """A segmentation head whose outputs are post-processing moved into the graph: the logits are
    upsampled x4 (Resize, nearest / bilinear) and transposed to NHWC; a second output is flattened."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, 32, stride=2), conv_bn(32, 32))
        self.seg, self.emb = nn.Conv2d(32, classes, 1), nn.Conv2d(32, 8, 1)

    def forward(self, x):
        f = self.body(x)
        seg = F.interpolate(self.seg(f), scale_factor=4.0, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        mask = F.interpolate(self.emb(f), scale_factor=2.0, mode="nearest").permute(0, 2, 3, 1)
        return seg, mask.reshape(mask.shape[0], -1)


class FakeQuantCNN(nn.Module):
    """QAT-style network as NVIDIA's pytorch-quantization writes it: fake-quant (symmetric int8) on
    every Conv/Gemm input (per tensor, amax calibrated by `record`) and weight (per output channel),
    exported as Q/DQ pairs. Weight scales are constant buffers, or with `graph_scales` computed in the
    graph from the weights (Abs, ReduceMax, Div: a scale that is not an initializer)."""

    def __init__(self, classes: int = 10, graph_scales: bool = False):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1), nn.Conv2d(32, 32, 3, 1, 1)])
        self.fc = nn.Linear(32, classes)
        self.graph_scales, self.recording = graph_scales, False
        self.amax = [0.0] * 4
        for i, layer in enumerate([*self.convs, self.fc]):
            self.register_buffer(f"wscale{i}", (layer.weight.detach().abs().flatten(1).amax(1) / 127.0).float())

    def record(self, x: torch.Tensor) -> "FakeQuantCNN":
        """Set every activation amax to the max |x| seen on `x` (max calibration)."""
        self.recording = True
        with torch.no_grad():
            self(x)
        self.recording = False
        return self

    def fq_act(self, x, i):
        if self.recording:
            self.amax[i] = max(self.amax[i], float(x.abs().max()))
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.amax[i] / 127.0, 0, -128, 127)

    def fq_weight(self, w, i):
        scale = (w.abs().flatten(1).amax(1) / 127.0).float() if self.graph_scales else getattr(self, f"wscale{i}")
        return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -128, 127)

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = F.relu(F.conv2d(self.fq_act(x, i), self.fq_weight(conv.weight, i), conv.bias, conv.stride, conv.padding))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.linear(self.fq_act(x, 3), self.fq_weight(self.fc.weight, 3), self.fc.bias)


class HFWrapper(nn.Module):
    """A transformers model called with keyword inputs, returning the named output tensors as a tuple."""

    def __init__(self, model: nn.Module, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.inputs, self.outputs = model.eval(), inputs, outputs

    def forward(self, *args):
        result = self.model(**dict(zip(self.inputs, args)), return_dict=True)
        return tuple(result[name] for name in self.outputs)


# ---------------------------------------------------------------- builders -----------------------
# Each builder writes its files into the folder and returns the Entries it made.

IMG = "input"


def image_data(folder: Path, stem: str, shape: tuple[int, ...], name: str = IMG, calib: bool = True) -> list[str]:
    files = [save_npz(folder, f"{stem}.npz", {name: images(TEST_FEEDS, shape, stem)})]
    if calib:
        files.append(save_npz(folder, f"{stem}.calib.npz", {name: images(CALIB_FEEDS, shape, stem + ".calib")}))
    return files


def cnn(folder: Path, name: str, what: str, module: nn.Module, shape: tuple[int, ...], outputs: list[str],
        dynamic: dict | None = None, notes: str = "") -> list[Entry]:
    torch.manual_seed(SEED)
    settle_bn(module, shape, name)
    x = torch.from_numpy(images(1, shape, name)[0])
    entries = []
    for stem, exporter in export_both(module, (x,), folder, name, inputs=[IMG], outputs=outputs, dynamic=dynamic):
        entries.append(Entry(stem, what, exporter, notes, image_data(folder, stem, shape)))
    return entries


def build_cnns(folder: Path) -> list[Entry]:
    torch.manual_seed(SEED)
    batch = {IMG: {0: "batch"}, "logits": {0: "batch"}}
    hw = {IMG: {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    return [
        *cnn(folder, "efficientnet", "EfficientNet-like: MBConv, SiLU, squeeze-excitation (Sigmoid gate), 10 classes",
             randomize_bn(efficientnet_like(), 1), (1, 3, 64, 64), ["logits"], batch),
        *cnn(folder, "mobilenetv3", "MobileNetV3-like: HardSwish, Hardsigmoid SE, 10 classes; data at batch 2, 96x96",
             randomize_bn(mobilenetv3_like(), 2), (2, 3, 96, 96), ["logits"], hw),
        *cnn(folder, "unet", "UNet segmentation: per-pixel logits of 4 classes, ConvTranspose + bilinear Resize, skip Concats",
             randomize_bn(UNet(), 3), (1, 3, 64, 64), ["logits"]),
        *cnn(folder, "yolo", "YOLO-style detector: 3 scales, decode tail (Sigmoid, grid offsets, anchors), Concat -> [1, 252, 8]",
             randomize_bn(YoloLike(), 4), (1, 3, 64, 64), ["detections"]),
        *cnn(folder, "preact_resnet", "pre-activation residual net: BN -> ReLU -> Conv blocks, 10 classes",
             randomize_bn(PreActResNet(), 5), (1, 3, 32, 32), ["logits"]),
        *cnn(folder, "bn1d_classifier", "CNN with Flatten -> BatchNorm1d -> Gemm and Gemm -> BatchNorm1d -> ReLU -> Gemm",
             randomize_bn(bn1d_classifier(), 6), (1, 3, 32, 32), ["logits"]),
        *cnn(folder, "nhwc_resize_tail", "segmentation head with output tails: bilinear Resize x4 -> NHWC Transpose; nearest Resize x2 -> NHWC -> Reshape",
             randomize_bn(NhwcResizeTail(), 7), (1, 3, 64, 64), ["seg_nhwc", "mask_flat"]),
    ]


def build_qat(folder: Path) -> list[Entry]:
    """Fake-quant exports (the dynamo exporter has no fake_quantize: its failure is listed)."""
    batch = {IMG: {0: "batch"}, "logits": {0: "batch"}}
    entries = []
    for name, graph_scales, what in (
            ("qat_fakequant", False, "QAT export: torch fake-quant (int8 symmetric, per-channel weight scales as constants, "
                                     "activation amax max-calibrated) as QuantizeLinear/DequantizeLinear"),
            ("qat_graph_scales", True, "the same QAT net with its weight scales computed in the graph (Abs, ReduceMax, Div "
                                       "of the weight): TensorRT's builder needs constant scales")):
        torch.manual_seed(SEED)
        module = FakeQuantCNN(graph_scales=graph_scales).record(torch.from_numpy(images(16, (1, 3, 32, 32), name).reshape(-1, 3, 32, 32)))
        entries += cnn(folder, name, what, module, (1, 3, 32, 32), ["logits"], batch)
    return entries


def build_recurrent(folder: Path) -> list[Entry]:
    entries = []
    for name, cell, kwargs in (("lstm", nn.LSTM, {}), ("gru", nn.GRU, {"bidirectional": True})):
        torch.manual_seed(SEED)
        x = torch.from_numpy(sequences(1, (1, 20, 16), name)[0])
        dynamic = {"sequence": {0: "batch", 1: "time"}, "steps": {0: "batch", 1: "time"}, "logits": {0: "batch"}}
        what = f"2-layer {'bidirectional ' if kwargs else ''}{cell.__name__} over [batch, time, 16]: per-step outputs and logits"
        for stem, exporter in export_both(Recurrent(cell, **kwargs), (x,), folder, name, inputs=["sequence"],
                                          outputs=["steps", "logits"], dynamic=dynamic):
            files = [save_npz(folder, f"{stem}.npz", {"sequence": sequences(TEST_FEEDS, (1, 20, 16), stem)}),
                     save_npz(folder, f"{stem}.calib.npz", {"sequence": sequences(CALIB_FEEDS, (1, 20, 16), stem + ".calib")})]
            entries.append(Entry(stem, what, exporter, "", files))
    return entries


def hf_export(folder: Path, name: str, what: str, model: nn.Module, feeds: Callable[[int, str], dict[str, np.ndarray]],
              outputs: list[str], dynamic: dict, notes: str) -> list[Entry]:
    example = {k: v[0] for k, v in feeds(1, name).items()}
    inputs = list(example)
    args = tuple(torch.from_numpy(example[k]) for k in inputs)
    entries = []
    for stem, exporter in export_both(HFWrapper(model, inputs, outputs), args, folder, name, inputs=inputs,
                                      outputs=outputs, dynamic={k: v for k, v in dynamic.items() if k in inputs + outputs}):
        files = [save_npz(folder, f"{stem}.npz", feeds(TEST_FEEDS, stem)),
                 save_npz(folder, f"{stem}.calib.npz", feeds(CALIB_FEEDS, stem + ".calib"))]
        entries.append(Entry(stem, what, exporter, notes, files))
    return entries


def bert_feeds(count: int, tag: str, vocab: int = 1000, length: int = 32) -> dict[str, np.ndarray]:
    feeds = tokens(count, 1, length, vocab, tag)
    split = rng(tag + "split").integers(4, length // 2, size=(count, 1, 1))
    feeds["token_type_ids"] = ((np.arange(length) >= split) & (feeds["attention_mask"] == 1)).astype(np.int64)
    return feeds


def build_transformers(folder: Path) -> list[Entry]:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        ViTConfig,
        ViTForImageClassification,
        YolosConfig,
        YolosForObjectDetection,
    )
    # initializer_range 0.1 (default 0.02): with 0.02 the tiny models' outputs barely depend on the input
    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, initializer_range=0.1)
    seq = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
           "token_type_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    pix = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "pred_boxes": {0: "batch"}}
    token_note = "input_ids in [0, 1000) (0 = padding; `--input-range input_ids:1,999`), attention_mask and token_type_ids 0/1"
    torch.manual_seed(SEED)
    entries = hf_export(folder, "bert", "BERT encoder + sequence classifier (transformers BertConfig, 2 layers, hidden 64), 3 classes",
                        BertForSequenceClassification(BertConfig(vocab_size=1000, max_position_embeddings=64, num_labels=3, **small)),
                        bert_feeds, ["logits"], seq, token_note)
    torch.manual_seed(SEED)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=4, use_cache=False, initializer_range=0.1,
                                      bos_token_id=1, eos_token_id=2))
    entries += hf_export(folder, "gpt2", "GPT-2 decoder LM head (transformers GPT2Config, 2 layers, n_embd 64): logits [batch, seq, 1000]",
                         gpt2, lambda n, tag: tokens(n, 1, 32, 1000, tag), ["logits"],
                         {**seq, "logits": {0: "batch", 1: "sequence"}}, token_note.replace(" and token_type_ids", ""))
    torch.manual_seed(SEED)
    vit = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_labels=10, **small))
    entries += hf_export(folder, "vit", "ViT image classifier (transformers ViTConfig, 32x32, patch 8, 2 layers), 10 classes",
                         vit, lambda n, tag: {"pixel_values": images(n, (1, 3, 32, 32), tag)}, ["logits"], pix, "")
    torch.manual_seed(SEED)
    yolos = YolosForObjectDetection(YolosConfig(image_size=[64, 64], patch_size=16, num_detection_tokens=10, num_labels=5, **small))
    with torch.no_grad():  # they start at zero: every query would predict the same box
        yolos.vit.embeddings.detection_tokens.normal_(0, 0.5)
    entries += hf_export(folder, "vit_detector", "ViT detector (transformers YOLOS, DETR-style head): logits [batch, 10, 6] and "
                         "pred_boxes = Sigmoid(MLP) box coordinates [batch, 10, 4]",
                         yolos, lambda n, tag: {"pixel_values": images(n, (1, 3, 64, 64), tag)}, ["logits", "pred_boxes"], pix,
                         "pred_boxes are (cx, cy, w, h) in [0, 1], not scores")
    return entries


def build_unnamed(folder: Path, source: str = "efficientnet_dynamo") -> list[Entry]:
    """A copy of an exported model with every node name cleared (as some exporters and zoos write them)."""
    model = onnx.load(str(folder / f"{source}.onnx"))
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(folder / "unnamed_nodes.onnx"))
    files = image_data(folder, "unnamed_nodes", (1, 3, 64, 64))
    return [Entry("unnamed_nodes", f"{source} with every node name cleared", "torch dynamo=True, names cleared", "", files)]


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 1024), nn.GELU(), nn.Linear(1024, 10))

    def forward(self, x):
        return self.net(x)


def build_external(folder: Path) -> list[Entry]:
    """An MLP (5.3 MB of weights) saved with its weights in external_data_mlp.onnx.data."""
    torch.manual_seed(SEED)
    path = folder / "external_data_mlp.onnx"
    export(Mlp(), (torch.randn(1, 256),), path, dynamo=False, inputs=["features"], outputs=["logits"])
    model = onnx.load(str(path))
    (folder / "external_data_mlp.onnx.data").unlink(missing_ok=True)
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="external_data_mlp.onnx.data", size_threshold=1024)
    g = rng("external")
    files = [save_npz(folder, "external_data_mlp.npz", {"features": g.standard_normal((TEST_FEEDS, 1, 256), dtype=np.float32)}),
             save_npz(folder, "external_data_mlp.calib.npz", {"features": g.standard_normal((CALIB_FEEDS, 1, 256), dtype=np.float32)})]
    return [Entry("external_data_mlp", "MLP 256-1024-1024-10 (GELU) with weights in external data (external_data_mlp.onnx.data)",
                  "torch dynamo=False, onnx.save(save_as_external_data=True)", "", ["external_data_mlp.onnx.data", *files])]


class CalibrationReader:
    """onnxruntime.quantization's CalibrationDataReader over the feeds of a .calib.npz."""

    def __init__(self, npz: Path):
        data = np.load(npz)
        self.feeds = iter([{k: data[k][i] for k in data.files} for i in range(len(data[data.files[0]]))])

    def get_next(self):
        return next(self.feeds, None)


def build_qdq(folder: Path, source: str = "efficientnet_ts") -> list[Entry]:
    """onnxruntime.quantization.quantize_static of a CNN, QDQ format, per-channel weights: once with
    ORT's defaults (uint8 activations) and once with TensorRT-style settings (int8 symmetric)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    prepared = folder / f"{source}.prep.tmp.onnx"
    quant_pre_process(str(folder / f"{source}.onnx"), str(prepared), skip_symbolic_shape=True)
    variants = {"qdq_ort_default": dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
                "qdq_ort_s8s8": dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                     extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})}
    entries = []
    for name, kwargs in variants.items():
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(prepared), str(folder / f"{name}.onnx"), CalibrationReader(folder / f"{source}.calib.npz"),
                            quant_format=QuantFormat.QDQ, per_channel=True, **kwargs)
        files = image_data(folder, name, (1, 3, 64, 64))
        act = "uint8 asymmetric" if "default" in name else "int8 symmetric"
        entries.append(Entry(name, f"{source} quantized by onnxruntime quantize_static: QDQ, per-channel int8 weights, {act} activations",
                             "onnxruntime.quantization.quantize_static", f"float original: {source}.onnx", files))
    prepared.unlink()
    return entries


def build_sklearn(folder: Path) -> list[Entry]:
    """RandomForest on iris through skl2onnx: TreeEnsembleClassifier + ZipMap (a sequence-of-maps output)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=SEED).fit(x, y)
    onx = to_onnx(forest, initial_types=[("input", FloatTensorType([None, 4]))], target_opset={"": 17, "ai.onnx.ml": 3})
    onnx.save(onx, str(folder / "sklearn_forest.onnx"))
    rows = x[rng("iris").permutation(len(x))[:TEST_FEEDS]].astype(np.float32)
    files = [save_npz(folder, "sklearn_forest.npz", {"input": rows[:, None, :]})]
    return [Entry("sklearn_forest", "scikit-learn RandomForestClassifier on iris (ai.onnx.ml TreeEnsembleClassifier + ZipMap)",
                  "skl2onnx", "out of scope: output 'output_probability' is seq(map(int64, float))", files)]


def save_graph(folder: Path, name: str, nodes, inputs, outputs, opset: int = 17) -> None:
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs), opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(folder / f"{name}.onnx"))


def build_out_of_scope(folder: Path) -> list[Entry]:
    """Non-tensor graph inputs and outputs: a sequence output, a sequence input, an optional output."""
    seq_t = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [1, 4]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 4])
    save_graph(folder, "seq_output", [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                                      helper.make_node("SplitToSequence", ["r"], ["parts"], name="split", axis=1, keepdims=0)],
               [x], [helper.make_value_info("parts", seq_t), helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 6, 4])])
    save_graph(folder, "seq_input", [helper.make_node("ConcatFromSequence", ["parts"], ["stacked"], name="concat", axis=0, new_axis=1),
                                     helper.make_node("Relu", ["stacked"], ["y"], name="relu")],
               [helper.make_value_info("parts", seq_t)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["parts", 1, 4])])
    opt_t = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [1, 6, 4]))
    save_graph(folder, "optional_output", [helper.make_node("Relu", ["x"], ["y"], name="relu"),
                                           helper.make_node("Optional", ["y"], ["maybe"], name="wrap")],
               [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4]), helper.make_value_info("maybe", opt_t)], opset=18)
    data = {"x": rng("oos").standard_normal((TEST_FEEDS, 1, 6, 4)).astype(np.float32)}
    return [Entry("seq_output", "Relu then SplitToSequence: outputs a sequence of 6 tensors and the tensor r", "onnx.helper",
                  "out of scope: sequence output", [save_npz(folder, "seq_output.npz", data)]),
            Entry("seq_input", "ConcatFromSequence over a sequence input, then Relu", "onnx.helper",
                  "out of scope: sequence input (no .npz can hold it)", []),
            Entry("optional_output", "Relu, and the same tensor wrapped by Optional as a second output (opset 18)", "onnx.helper",
                  "out of scope: optional output", [save_npz(folder, "optional_output.npz", data)])]


BUILDERS: dict[str, Callable[[Path], list[Entry]]] = {
    "cnns": build_cnns, "qat": build_qat, "recurrent": build_recurrent, "transformers": build_transformers, "unnamed": build_unnamed,
    "external": build_external, "qdq": build_qdq, "sklearn": build_sklearn, "out_of_scope": build_out_of_scope,
}


# ---------------------------------------------------------------- README -------------------------


def describe_type(type_proto: onnx.TypeProto) -> str:
    kind = type_proto.WhichOneof("value")
    if kind == "sequence_type":
        return f"seq({describe_type(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({describe_type(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        key = TensorProto.DataType.Name(type_proto.map_type.key_type).lower()
        return f"map({key}, {describe_type(type_proto.map_type.value_type)})"
    tensor = type_proto.tensor_type
    dtype = TensorProto.DataType.Name(tensor.elem_type).lower()
    if not tensor.HasField("shape"):
        return f"{dtype} (rank unknown)"
    dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in tensor.shape.dim]
    return f"{dtype} [{', '.join(dims)}]"


def describe_value(value: onnx.ValueInfoProto) -> str:
    return f"{value.name}: {describe_type(value.type)}"


def readme_line(folder: Path, entry: Entry) -> str:
    path = folder / f"{entry.name}.onnx"
    model = onnx.load(str(path), load_external_data=False)
    size = sum((folder / f).stat().st_size for f in entry.files if f.endswith(".data")) + path.stat().st_size
    opsets = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
    ins = "; ".join(describe_value(v) for v in model.graph.input)
    outs = "; ".join(describe_value(v) for v in model.graph.output)
    files = ", ".join(f"`{f}`" for f in entry.files) or "none"
    notes = f" Note: {entry.notes}." if entry.notes else ""
    return (f"* `{entry.name}.onnx` ({size / 2**20:.2f} MB, {len(model.graph.node)} nodes, opset {opsets}): {entry.what}. "
            f"Exporter: {entry.exporter}. Inputs: {ins}. Outputs: {outs}. Data: {files}.{notes}")


def write_readme(folder: Path, entries: list[Entry]) -> None:
    lines = ["# Zoo of foreign ONNX models", "",
             "Built by `python benchmarks/zoo.py` (onnx2trt_check repository) with random weights and synthetic, realistic data.",
             "`.npz` files: keys are input names, the leading axis holds the feeds (`[feeds, *input shape]`); `.calib.npz` the",
             "same for int8 calibration. `?` is a dynamic dim without a name. `_ts`: torch.onnx.export(dynamo=False),",
             "`_dynamo`: dynamo=True.", ""]
    lines += [readme_line(folder, e) for e in entries]
    if EXPORT_FAILURES:
        lines += ["", "Exports that failed (left out):", "", *(f"* {failure}" for failure in EXPORT_FAILURES)]
    if (folder / "FINDINGS.md").exists():  # written by hand beside the zoo: keep pointing at it on a rebuild
        lines += ["", "`FINDINGS.md`: what onnx2trt_check does on these models, one entry per surprise."]
    (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="/work/zoo", type=Path)
    parser.add_argument("--only", action="append", choices=sorted(BUILDERS), help="build only these groups (repeatable)")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    entries = []
    for group, build in BUILDERS.items():
        if args.only and group not in args.only:
            continue
        start = time.perf_counter()
        made = build(args.folder)
        print(f"{group}: {', '.join(e.name for e in made)} ({time.perf_counter() - start:.1f} s)")
        entries += made
    too_big = [e.name for e in entries if (args.folder / f"{e.name}.onnx").stat().st_size > MAX_BYTES]
    if too_big:
        print(f"over {MAX_BYTES >> 20} MB: {too_big}", file=sys.stderr)
        return 1
    if not args.only:
        write_readme(args.folder, entries)
    print(f"{len(entries)} models in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
