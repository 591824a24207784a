"""Fuse RepVGG / RepConv blocks: a sum of parallel branches over one input becomes one Conv.

A block is a tree of Add nodes whose leaves are branches over the same input x: a Conv (KxK, 1x1,
any size up to the largest), optionally followed by an inference BatchNormalization; x itself
(identity); or BatchNormalization(x). Conv is linear, so the sum of branches is one Conv whose
kernel is the sum of the branch kernels, each zero-padded into the largest kernel at the offset that
aligns its window (the center for a 1x1 branch with pad = (K-1)/2 less), and whose bias is the sum
of the branch biases. Identity is the (grouped) identity kernel. Branches given as Conv+BN or as an
already folded Conv with bias are both handled. Add trees are visited in graph order, so a block
whose inner Adds form a block of their own is fused step by step to the same result.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.fold_conv_bn import scale_output_channels


@dataclasses.dataclass(frozen=True)
class Branch:
    """One summand: [conv] -> [bn] over `source`, ending in `leaf`, read by `add`."""

    source: ir.Value
    leaf: ir.Value
    add: ir.Node
    conv: ir.Node | None = None
    bn: ir.Node | None = None

    @property
    def nodes(self) -> list[ir.Node]:
        return [node for node in (self.conv, self.bn) if node is not None]


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A branch as a linear conv: weight [C_out, C_in/group, k...] and bias, in float64."""

    weight: np.ndarray
    bias: np.ndarray
    pads: tuple[int, ...]
    strides: tuple[int, ...] | None  # None: identity, valid only with unit strides
    dilations: tuple[int, ...]
    group: int


def fuse_repconv(model: onnx.ModelProto) -> TransformResult:
    """Fuse every Add tree of parallel conv/identity branches over one input into one Conv."""
    ir_model = gu.to_ir(model)
    graph = ir_model.graph
    report = TransformReport()
    for add in gu.live_nodes(graph, "Add"):
        if add.graph is graph:
            _try_fuse(graph, add, report)
    if not report.matches:
        return TransformResult(gu.copy_model(model), False, report)
    return TransformResult(gu.to_onnx(ir_model), True, report)


def _try_fuse(graph: ir.Graph, root: ir.Node, report: TransformReport) -> None:
    leaves, adds = _flatten(root)
    branches = _branches(leaves)
    if branches is None:
        return  # not a candidate: no two summands branch off one input through a Conv
    if isinstance(branches, str):
        report.skipped([gu.node_label(n) for n in adds], branches)
        return
    labels = [gu.node_label(n) for n in adds] + [gu.node_label(n) for b in branches for n in b.nodes]
    outcome = _fused_kernel(branches)
    if isinstance(outcome, str):
        report.skipped(labels, outcome)
        return
    main, weight, bias = outcome
    _rewrite(graph, root, adds, branches, main, weight, bias)
    report.matched(labels, f"{len(branches)} branches fused into one {'x'.join(map(str, weight.shape[2:]))} Conv")


def _flatten(root: ir.Node) -> tuple[list[tuple[ir.Value, ir.Node]], list[ir.Node]]:
    """The summands (value, the Add that reads it) of the Add tree at `root`, and its Adds. An
    inner Add belongs to the tree only if its output feeds nothing else."""
    leaves, adds, pending = [], [root], [root]
    while pending:
        add = pending.pop()
        for value in add.inputs:
            inner = value.producer() if value is not None else None
            if gu.is_op(inner, "Add") and gu.only_feeds(value, add):
                adds.append(inner)
                pending.append(inner)
            else:
                leaves.append((value, add))
    return leaves, adds


def _readings(value: ir.Value, add: ir.Node) -> list[Branch]:
    """Every way to read `value` as a branch, deepest first (Conv+BN, Conv, BN, identity)."""
    readings = []
    producer = value.producer()
    if gu.is_op(producer, "BatchNormalization"):
        conv = producer.inputs[0].producer()
        if gu.is_op(conv, "Conv"):
            readings.append(Branch(conv.inputs[0], value, add, conv=conv, bn=producer))
        readings.append(Branch(producer.inputs[0], value, add, bn=producer))
    if gu.is_op(producer, "Conv"):
        readings.append(Branch(producer.inputs[0], value, add, conv=producer))
    readings.append(Branch(value, value, add))
    return readings


def _branches(leaves) -> list[Branch] | str | None:
    """The branches over the input most summands share; None when this is not a RepConv block,
    a reason when it is one that cannot be fused."""
    if any(value is None for value, _ in leaves):
        return None
    readings = [_readings(value, add) for value, add in leaves]
    counts = collections.Counter(id(r.source) for options in readings for r in {id(o.source): o for o in options}.values())
    source_id, count = counts.most_common(1)[0]
    chosen = [next((r for r in options if id(r.source) == source_id), None) for options in readings]
    if count < 2 or not any(b is not None and b.conv is not None for b in chosen):
        return None
    if count < len(leaves):
        return f"Add sums branches of different inputs ({count} of {len(leaves)} summands read one input)"
    return _wiring_problem(chosen) or chosen


def _wiring_problem(branches: list[Branch]) -> str:
    """Why the branches' intermediate values forbid removing them ("" when they do not)."""
    for branch in branches:
        links = []
        if branch.conv is not None and branch.bn is not None:
            links.append((branch.conv.outputs[0], branch.bn))
        if branch.nodes:
            links.append((branch.leaf, branch.add))
        for value, reader in links:
            if not gu.only_feeds(value, reader):
                return f"intermediate value '{value.name}' has {gu.consumer_count(value)} consumers"
    return ""


def branch_kernel(branch: Branch, main: gu.ConvGeometry) -> Kernel | str:
    """The branch as a linear conv (an identity branch takes its channels and groups from the
    main conv's input side), or why not."""
    if branch.conv is not None:
        geometry = gu.conv_geometry(branch.conv)
        if isinstance(geometry, str):
            return geometry
        bias = np.zeros(geometry.weight.shape[0]) if geometry.bias is None else geometry.bias.astype(np.float64)
        kernel = Kernel(geometry.weight.astype(np.float64), bias, geometry.pads, geometry.strides,
                        geometry.dilations, geometry.group)
    else:
        kernel = identity_kernel(main.weight.shape[1] * main.group, main.group, rank=len(main.kernel))
    return kernel if branch.bn is None else _with_bn(kernel, branch.bn)


def identity_kernel(channels: int, group: int, *, rank: int) -> Kernel:
    """The 1x1 grouped conv that returns its input: output o reads input o, which is index
    o % (channels/group) of its group's slice."""
    per_group = channels // group
    weight = np.zeros((channels, per_group) + (1,) * rank)
    weight[np.arange(channels), np.arange(channels) % per_group] = 1.0
    return Kernel(weight, np.zeros(channels), (0,) * (2 * rank), None, (1,) * rank, group)


def _with_bn(kernel: Kernel, bn: ir.Node) -> Kernel | str:
    affine = gu.inference_batchnorm(bn)
    if isinstance(affine, str):
        return affine
    scale, shift = affine
    if scale.size != kernel.weight.shape[0]:
        return f"BatchNormalization has {scale.size} channels, its branch outputs {kernel.weight.shape[0]}"
    weight = scale_output_channels(kernel.weight, scale, transposed=False, group=kernel.group)
    return dataclasses.replace(kernel, weight=weight, bias=kernel.bias * scale + shift)


def _fused_kernel(branches: list[Branch]):
    """(main conv node, fused weight, fused bias) or the reason the branches do not line up."""
    main = max((b.conv for b in branches if b.conv is not None), key=_kernel_size)
    main_geometry = gu.conv_geometry(main)
    if isinstance(main_geometry, str):
        return main_geometry
    weight = np.zeros(main_geometry.weight.shape)
    bias = np.zeros(main_geometry.weight.shape[0])
    for branch in branches:
        kernel = branch_kernel(branch, main_geometry)
        if isinstance(kernel, str):
            return kernel
        problem = alignment_problem(kernel, main_geometry)
        if problem:
            return problem
        weight += embedded(kernel, main_geometry)
        bias += kernel.bias
    return main, weight.astype(main_geometry.weight.dtype), bias.astype(main_geometry.weight.dtype)


def _kernel_size(conv: ir.Node) -> int:
    weight = gu.constant_array(conv.inputs[1] if len(conv.inputs) > 1 else None)
    return -1 if weight is None else int(np.prod(weight.shape[2:]))


def alignment_problem(kernel: Kernel, main: gu.ConvGeometry) -> str:
    """Why `kernel` cannot be placed into `main`'s kernel so both compute the same windows."""
    if kernel.strides is None and any(s != 1 for s in main.strides):
        return f"identity branch with strides {list(main.strides)}: output and input shapes differ"
    if kernel.strides is None and kernel.weight.shape[0] != main.weight.shape[0]:
        return f"identity branch: {kernel.weight.shape[0]} input channels, {main.weight.shape[0]} output channels"
    if kernel.group != main.group:
        return f"inconsistent groups: {kernel.group} and {main.group}"
    if kernel.strides is not None and kernel.strides != main.strides:
        return f"inconsistent strides: {list(kernel.strides)} and {list(main.strides)}"
    if kernel.weight.ndim != main.weight.ndim or kernel.weight.shape[:2] != main.weight.shape[:2]:
        return f"branch weight shape {list(kernel.weight.shape)} does not fit {list(main.weight.shape)}"
    for axis, size in enumerate(kernel.weight.shape[2:]):
        if size > 1 and kernel.dilations[axis] != main.dilations[axis]:
            return f"inconsistent dilations: {list(kernel.dilations)} and {list(main.dilations)}"
    offsets = _offsets(kernel, main)
    if offsets is None:
        name = "identity branch" if kernel.strides is None else "branch"
        return f"{name} pads {list(kernel.pads)} do not align with the {main.kernel} kernel's pads {list(main.pads)}"
    return ""


def _offsets(kernel: Kernel, main: gu.ConvGeometry) -> tuple[int, ...] | None:
    """Per axis, the tap of the main kernel where the branch kernel starts, if its windows align:
    the begin pads differ by a whole number of (dilated) taps, and the end pads so that the output
    sizes agree for every input size."""
    rank = len(main.kernel)
    offsets = []
    for axis in range(rank):
        size, dilation = kernel.weight.shape[2 + axis], main.dilations[axis]
        shift_begin = main.pads[axis] - kernel.pads[axis]
        shift_end = main.pads[rank + axis] - kernel.pads[rank + axis]
        offset, remainder = divmod(shift_begin, dilation)
        if remainder or not 0 <= offset <= main.kernel[axis] - size:
            return None
        if shift_end != dilation * (main.kernel[axis] - size - offset):
            return None
        offsets.append(offset)
    return tuple(offsets)


def embedded(kernel: Kernel, main: gu.ConvGeometry) -> np.ndarray:
    """The branch weight zero-padded to the main kernel's shape at its aligned offset."""
    placed = np.zeros(main.weight.shape)
    window = tuple(slice(o, o + n) for o, n in zip(_offsets(kernel, main), kernel.weight.shape[2:]))
    placed[(slice(None), slice(None)) + window] = kernel.weight
    return placed


def _rewrite(graph, root, adds, branches, main, weight, bias) -> None:
    base = main.name or main.outputs[0].name
    inputs = [branches[0].source, gu.add_initializer(graph, weight, name_hint=f"{base}_rep_weight"),
              gu.add_initializer(graph, bias, name_hint=f"{base}_rep_bias")]
    attributes = {k: v for k, v in main.attributes.items() if k != "kernel_shape"}
    fused = ir.node("Conv", inputs, attributes=attributes, name=f"{base}_rep")
    old_nodes = list(adds) + [node for b in branches for node in b.nodes]
    old_params = [v for b in branches for node in b.nodes for v in node.inputs[1:]]
    gu.replace_with_nodes(graph, old_nodes, [fused], root.outputs[0], fused.outputs[0])
    gu.drop_unused_initializers(graph, old_params)
