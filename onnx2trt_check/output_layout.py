"""What the graph says about how an output is to be compared: the parts a final Concat joins it from
(`Segments`), and whether it is the indices output of a TopK (`topk_axis`).

Parts: a detector's [N, 4 + classes, anchors] joins box coordinates in pixels (up to 640) with class
scores in [0, 1]. Why: the int8 floors (SQNR, cosine) over the whole output measure the part of the largest scale.
A one-class detector's scores, their logits rounded to integers (4 dB), passed at 83 dB beside its
boxes; sqnr.typical_elements_sqnr sees scores only where they are the many elements of the
output (16 classes beside 4 box rows), not where they are the few (1 to 4 classes). The graph names
the parts, so each is judged on its own scale. Found by zoo13.

TopK indices: which k items a row selects is what a TopK's indices say; the order among near-equal
scores is rounding's choice. Compared position by position, an honest int8 model's top-20 of 200
sigmoid scores failed at 75% agreement (its scores output passed); compared as the set each row
selects, order inside the top-k is no error, a different item is.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx

from . import protos

KEEP_BYTES = 1 << 16  # initializers up to this size stay values for shape inference (Reshape's shape); larger ones become typed inputs


@dataclasses.dataclass(frozen=True)
class Segments:
    """An output joined along `axis` from `parts`: (the Concat input's name, its size along axis; None
    for at most one part, whose size is what the others leave of each feed's output)."""

    axis: int
    parts: tuple[tuple[str, int | None], ...]
    # The split every part shares along another axis, where each part is itself a Concat (through
    # Identity, Q/DQ pairs or a Reshape that keeps that axis): YOLOv5 joins its levels along the
    # anchors, each level [N, anchors, xy + wh + scores] (review16: a one-class detector whose scores
    # int8 made one constant value passed at 38 dB, every level carried by its pixel boxes).
    inner: Segments | None = None

    def bounds(self, total: int | None = None):
        """(name, start, stop) of each part along the axis; the free part's size from `total`, the
        output's size there (review17: a KV cache whose past length differed between feeds had no
        parts, and an int8 whose new key was halved passed at 26 dB, its part at 6 dB)."""
        start, known = 0, sum(size for _, size in self.parts if size is not None)
        for name, size in self.parts:
            size = size if size is not None else (total if total is not None else known) - known
            yield name, start, start + size
            start += size


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    """How one output is compared beyond element by element: its parts (compare's part floors), or
    the axis along which it holds a TopK's selected indices (compared as sets)."""

    segments: Segments | None = None
    topk_axis: int | None = None
    # A TopK's values: each row ranked, its first item always its largest, so a top-1 agreement of
    # class scores would read 100% whatever the values (hunt17). Seen in the graph, not in the data:
    # a binary classifier's rows are all sorted on data where one class always wins.
    ranked: bool = False
    # Rows a NonMaxSuppression selected: how many it keeps moves with rounding near its thresholds
    # (NMS_ADVICE, said where the shapes differ; their pairing is not built).
    after_nms: bool = False


NMS_ADVICE = ("its rows follow a NonMaxSuppression's selection, whose count moves with rounding at the score and IoU "
              "thresholds, so a sound int8 or fp16 model can keep another count: judge precision on the outputs before "
              "NMS (export them too), this output at fp32")


def output_layouts(model: onnx.ModelProto, feeds=()) -> dict[str, OutputLayout]:
    """The layout of each graph output the graph says something about; the others are absent. A part
    of a free size named by a graph input's dimension (a KV cache's past) takes the size every feed
    gives that input there (hunt18: present = Concat(past, new) with past free was judged whole, and a
    cached key halved for the new token passed at 23.7 dB, its part 6 dB)."""
    producers = {name: node for node in model.graph.node for name in node.output}
    inferred = _inferred(model, _fed_dims(model, feeds))
    layouts = {}
    for name, segments in (_segments(*inferred) if inferred else {}).items():
        layouts[name] = OutputLayout(segments=segments)
    for output in model.graph.output:
        node = _past_integer_casts(producers, output.name)
        if (topk := indices_topk(producers, output.name)) is not None and not _sorts_whole_axis(topk, inferred[1] if inferred else {}):
            layouts[output.name] = OutputLayout(topk_axis=_ints(topk, "axis")[0] if _has(topk, "axis") else -1)
        elif node is not None and node.op_type == "TopK" and _named(producers, output.name, node.output[0]) and _ranks_rows(node, inferred):
            layouts[output.name] = OutputLayout(ranked=True)
    for name in _after_nms(model):
        layouts[name] = dataclasses.replace(layouts.get(name, OutputLayout()), after_nms=True)
    return layouts


def _after_nms(model: onnx.ModelProto) -> set[str]:
    """The graph outputs a NonMaxSuppression's selection reaches."""
    reached = {name for node in model.graph.node if node.op_type == "NonMaxSuppression" for name in node.output}
    for node in model.graph.node:  # in graph order: producers come first
        if reached.intersection(node.input):
            reached.update(node.output)
    return {output.name for output in model.graph.output if output.name in reached}


def indices_topk(producers: dict[str, onnx.NodeProto], name: str) -> onnx.NodeProto | None:
    """The TopK whose indices output `name` is (through Identity, Q/DQ pairs and integer Casts), else None."""
    node = _past_integer_casts(producers, name)
    is_indices = node is not None and node.op_type == "TopK" and len(node.output) > 1 and _named(producers, name, node.output[1])
    return node if is_indices else None


def _past_integer_casts(producers: dict[str, onnx.NodeProto], name: str) -> onnx.NodeProto | None:
    """The producer of `name` past Identity nodes, Q/DQ pairs and Casts to an integer type."""
    node = _through(producers, name)
    while node is not None and node.op_type == "Cast" and _ints(node, "to")[0] in _INTEGER_TYPES:
        node = _through(producers, node.input[0])
    return node


def _ranks_rows(node: onnx.NodeProto, inferred) -> bool:
    """Whether a TopK's values come sorted along the last axis, where top-1 agreement reads rows."""
    dims = inferred[1].get(node.output[0]) if inferred else None
    axis = _ints(node, "axis")[0] if _has(node, "axis") else -1
    return (not _has(node, "sorted") or _ints(node, "sorted")[0] == 1) and (axis == -1 or (dims is not None and axis == len(dims) - 1))


def _sorts_whole_axis(node: onnx.NodeProto, shapes: dict[str, list[int | None]]) -> bool:
    """Whether a TopK keeps every item of its axis (k = the axis's size): a sort, whose indices say
    nothing but their order; as a set each row selects every item, so any order passed (review17: a
    ranking of 10 items given reversed passed fp32, fp16 and int8)."""
    before, after = shapes.get(node.input[0]), shapes.get(node.output[1])
    if not before or not after or len(before) != len(after):
        return False
    axis = (_ints(node, "axis")[0] if _has(node, "axis") else -1) % len(before)
    return before[axis] is not None and before[axis] == after[axis]


def _fed_dims(model: onnx.ModelProto, feeds) -> dict[str, int]:
    """Each dim_param of the graph inputs that every feed gives one size."""
    sizes: dict[str, set] = {}
    for value in model.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                sizes.setdefault(dim.dim_param, set()).update(
                    np.shape(feed[value.name])[axis] for feed in feeds if value.name in feed and np.ndim(feed[value.name]) > axis)
    return {name: next(iter(found)) for name, found in sizes.items() if len(found) == 1}


def concat_segments(model: onnx.ModelProto, fed_dims: dict[str, int] | None = None) -> dict[str, Segments]:
    """The graph outputs a Concat makes, directly or through Identity, Q/DQ pairs and one Transpose, whose inputs
    all but one at most have a known size along the joined axis; {} where shape inference fails."""
    inferred = _inferred(model, fed_dims or {})
    return _segments(*inferred) if inferred else {}


def _inferred(model: onnx.ModelProto, fed_dims: dict[str, int]) -> tuple[onnx.ModelProto, dict[str, list[int | None]]] | None:
    """The model with inferred shapes (its large weights left out) and each value's dims, or None
    where onnx's inference fails (no sizes: no parts, the whole output is judged as before)."""
    light = protos.without_large_weights(model, KEEP_BYTES)[0]
    try:
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    except Exception:  # noqa: BLE001 - onnx's inference errors
        return None
    return inferred, _static_dims(inferred, fed_dims)


def _segments(inferred: onnx.ModelProto, shapes: dict[str, list[int | None]]) -> dict[str, Segments]:
    producers = {name: node for node in inferred.graph.node for name in node.output}
    found = {}
    for output in inferred.graph.output:
        node, perm = _through(producers, output.name), None
        if node is not None and node.op_type == "Transpose":
            perm = _ints(node, "perm")
            node = _through(producers, node.input[0])
        if node is None or node.op_type != "Concat" or len(node.input) < 2:
            continue
        segments, inner = _concat_parts(node, shapes, perm), _shared_split(node, shapes, producers, perm)
        if segments is not None or inner is not None:  # levels of free sizes (a free resolution) still share their columns
            found[output.name] = dataclasses.replace(segments, inner=inner) if segments is not None else inner
    return found


def _named(producers: dict[str, onnx.NodeProto], name: str, source: str) -> bool:
    """Whether `name` is `source` or an Identity chain from it, or a Cast to another integer type
    (TensorRT deployments cast a TopK's int64 indices to int32: the set each row selects is kept)."""
    while name != source:
        node = producers.get(name)
        if node is None or not (node.op_type == "Identity" or (node.op_type == "Cast" and _ints(node, "to")[0] in _INTEGER_TYPES)):
            return False
        name = node.input[0]
    return True


_INTEGER_TYPES = {onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}


def _has(node: onnx.NodeProto, name: str) -> bool:
    return any(attribute.name == name for attribute in node.attribute)


def _shared_split(node: onnx.NodeProto, shapes: dict[str, list[int | None]], producers: dict[str, onnx.NodeProto],
                  perm: list[int] | None) -> Segments | None:
    """The split along another axis that every input of the output's Concat shares, or None."""
    found = [_inner_concat(name, shapes, producers) for name in node.input]
    if None in found or len({(axis, tuple(size for _, size in parts)) for axis, parts in found}) != 1:
        return None
    axis, parts = found[0]  # named by the first part's (YOLOv5: the first level's xy, wh, scores)
    rank = len(shapes.get(node.input[0]) or [])
    if not rank or (perm is not None and sorted(perm) != list(range(rank))) or axis == _ints(node, "axis")[0] % rank:
        return None
    return Segments(perm.index(axis) if perm else axis, parts)


def _inner_concat(name: str, shapes: dict[str, list[int | None]], producers: dict[str, onnx.NodeProto]):
    """(axis of `name`, parts) of the Concat `name` is made of through Identity, Q/DQ pairs and Reshapes
    that keep its axis whole, or None."""
    chain, node = [], _through(producers, name)
    while node is not None and node.op_type == "Reshape":
        chain.append(node)
        node = _through(producers, node.input[0])
    if node is None or node.op_type != "Concat" or len(node.input) < 2:
        return None
    dims = shapes.get(node.output[0])
    axis = _ints(node, "axis")[0] % len(dims) if dims else 0
    sizes = [(shapes.get(i) or [None] * (axis + 1))[axis] for i in node.input]
    if not dims or None in sizes:
        return None
    for reshape in reversed(chain):
        after = shapes.get(reshape.output[0])
        axis = _kept_axis(dims, axis, after) if after else None
        if axis is None:
            return None
        dims = after
    return axis, tuple(zip(node.input, sizes))


def _kept_axis(before: list[int | None], axis: int, after: list[int | None]) -> int | None:
    """Where a row-major Reshape from `before` to `after` keeps `axis` whole, or None: the same size
    there and the same known size after it (the batch before it may be free)."""
    trailing = before[axis:]
    if None in trailing:
        return None
    for index in range(len(after)):
        if after[index:] and None not in after[index:] and after[index] == before[axis] and math.prod(after[index:]) == math.prod(trailing):
            return index
    return None


def _concat_parts(node: onnx.NodeProto, shapes: dict[str, list[int | None]], perm: list[int] | None) -> Segments | None:
    dims = [shapes.get(name) for name in node.input]
    if any(d is None for d in dims):
        return None
    rank = len(dims[0])
    axis = _ints(node, "axis")[0] % rank if rank else 0
    sizes = [d[axis] if len(d) == rank else None for d in dims]
    if sizes.count(None) > 1 or any(len(d) != rank for d in dims) or (perm is not None and sorted(perm) != list(range(rank))):
        return None  # one free part takes the rest of each feed's output (Segments.bounds)
    return Segments(perm.index(axis) if perm else axis, tuple(zip(node.input, sizes)))


def _through(producers: dict[str, onnx.NodeProto], name: str) -> onnx.NodeProto | None:
    """The producer of `name` past Identity nodes and QuantizeLinear/DequantizeLinear pairs: onnxruntime's
    quantize_static puts such a pair on the final Concat's output, and a Q/DQ model's parts were not
    found (review16: a one-class detector's scores made constant passed derived::parity at 43.7 dB)."""
    node = producers.get(name)
    while node is not None:
        if node.op_type == "Identity":
            node = producers.get(node.input[0])
        elif node.op_type == "DequantizeLinear" and (quantize := producers.get(node.input[0])) is not None and quantize.op_type == "QuantizeLinear":
            node = producers.get(quantize.input[0])
        else:
            return node
    return node


def _ints(node: onnx.NodeProto, name: str) -> list[int]:
    for attribute in node.attribute:
        if attribute.name == name:
            return list(attribute.ints) if attribute.ints else [attribute.i]
    return [0] if name == "axis" else []


def _static_dims(model: onnx.ModelProto, fed_dims: dict[str, int]) -> dict[str, list[int | None]]:
    """Each typed value's dims: an int where inference knows it or the feeds fix its dim_param, None where not."""
    dims = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            dims[value.name] = [d.dim_value if d.HasField("dim_value") else fed_dims.get(d.dim_param) for d in tensor.shape.dim]
    for init in model.graph.initializer:
        dims[init.name] = list(init.dims)
    return dims
