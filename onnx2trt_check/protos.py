"""ModelProto-level helpers that need no graph IR: a model's header around another graph, the
names a node reads, and light copies with the large weights set aside."""

from __future__ import annotations

import numpy as np
import onnx


def read_onnx(path, *, load_external_data: bool = False) -> onnx.ModelProto:
    """The binary ONNX model at `path`, whatever its file name ends with. onnx.load picks a format
    by extension (.json, .onnxtxt, .textproto are read as text), but ONNX Runtime and TensorRT's
    parser read every file as binary protobuf: a text-format file loaded here and then failed in
    both as "INVALID_PROTOBUF" (model.load_model refuses it instead), and a non-JSON .json file
    raised an INTERNALERROR. Defaults to the header and inline weights only."""
    import os

    return onnx.load(os.fspath(path), format="protobuf", load_external_data=load_external_data)


def default_opset(model: onnx.ModelProto) -> int:
    """The model's ai.onnx opset (0 when it imports none)."""
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def all_nodes(proto: onnx.ModelProto):
    """Every node of the graph, its subgraphs and the model's local functions."""
    # a function's nodes are walked into too: a RandomNormal in an If of a local function was missed
    stack = [proto.graph.node] + [function.node for function in reversed(proto.functions)]
    while stack:
        for node in stack.pop():
            yield node
            for attribute in node.attribute:
                stack.extend(graph.node for graph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs))


def node_label(node: onnx.NodeProto) -> str:
    """A node's name in every report and option (--exclude, --fp16-block): its name, else
    `OpType(first output)`, as transforms/graph_utils.node_label names an onnx-ir node."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"


def model_with_graph(model: onnx.ModelProto, graph: onnx.GraphProto) -> onnx.ModelProto:
    """`model`'s header (IR version, opsets, functions, metadata) around `graph`, without copying
    `model`'s own graph and its weights on the way."""
    proto = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name == "graph":
            continue
        if hasattr(value, "extend"):  # a repeated field (FieldDescriptor.label is deprecated)
            getattr(proto, field.name).extend(value)
        elif field.message_type is not None:
            getattr(proto, field.name).CopyFrom(value)
        else:
            setattr(proto, field.name, value)
    proto.graph.CopyFrom(graph)
    return proto


def names_read(node: onnx.NodeProto) -> list[str]:
    """Every outer-scope value name a NodeProto reads: its inputs and what its subgraphs (If,
    Loop, Scan bodies) capture from the enclosing graph."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            names.extend(_captured(subgraph))
    return names


def _captured(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads that it does not define itself."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {n for node in graph.node for n in node.output}
    read = [name for node in graph.node for name in names_read(node)] + [o.name for o in graph.output]
    return [name for name in read if name not in defined]


# Element types packed two to a byte.
_FOUR_BIT_TYPES = frozenset(getattr(onnx.TensorProto, t) for t in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, t))


def raw_data_bytes(tensor: onnx.TensorProto) -> int:
    """The length raw_data must have for a numeric tensor's shape and element type."""
    count = int(np.prod(tensor.dims, dtype=np.int64))
    if tensor.data_type in _FOUR_BIT_TYPES:
        return (count + 1) // 2
    return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def without_large_weights(model: onnx.ModelProto, min_bytes: int) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A model whose initializers of more than `min_bytes` are typed graph inputs instead (no
    values), and those initializers by name: for tools that read only the graph's structure (shape
    inference, onnx.checker, the onnxoptimizer round trip), which would copy every weight byte.
    Only weights held in raw_data (what exporters write) are set aside; one already listed as a
    graph input (IR < 4 models) stays where it is. Sizes come from shape and type:
    TensorProto.ByteSize walks the whole message (0.06 s over a 100 MB model's weights)."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    stash = {t.name: t for t in graph.initializer
             if t.name not in inputs and t.HasField("raw_data") and raw_data_bytes(t) > min_bytes}
    kept = [t for t in graph.initializer if t.name not in stash]
    placeholders = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in stash.values()]
    light_graph = onnx.helper.make_graph(graph.node, graph.name, [*graph.input, *placeholders], graph.output, kept,
                                         doc_string=graph.doc_string, value_info=graph.value_info)
    light_graph.sparse_initializer.extend(graph.sparse_initializer)
    return model_with_graph(model, light_graph), stash


def in_deployable_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` as the artifacts (fp16, int8, transforms) are built from: nodes in topological order
    and no initializer listed among the graph inputs. ONNX Runtime and TensorRT's parser take both
    forms, but onnx-ir cannot clone an unsorted graph, and a weight also listed as an input (IR 3
    exporters: caffe2, keras2onnx) stays an input the int8 model must be fed once its initializer
    is replaced by a quantized one. Every check feeds only the real inputs (model.graph_inputs) and
    TensorRT's parser treats such weights as weights, so these weights are constants here too.
    `model` itself when already so (no copy), else a copy at IR 4 or later."""
    weights = {t.name for t in model.graph.initializer}
    if not any(v.name in weights for v in model.graph.input) and topologically_sorted(model.graph):
        return model
    import onnx_ir as ir

    copy = ir.from_proto(model)  # onnx-ir: sorts subgraphs too and wraps weights without copying them
    for value in [v for v in copy.graph.inputs if v.is_initializer()]:
        copy.graph.inputs.remove(value)
    copy.graph.sort()
    copy.ir_version = max(copy.ir_version, 4)  # IR 3 required every initializer to be a graph input
    return ir.to_proto(copy)


def topologically_sorted(graph: onnx.GraphProto) -> bool:
    """Whether every node reads only names defined before it (inputs, initializers, earlier
    outputs; subgraph captures included). The check of a graph whose outer scope it cannot see is
    not needed: artifacts start from the main graph."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        if any(name not in defined for name in names_read(node)):
            return False
        defined.update(node.output)
    return True


def input_independent_outputs(model: onnx.ModelProto) -> list[str]:
    """Graph outputs no graph input reaches (weights included as inputs count as weights): the same
    on every feed, so every comparison of them measures the weights alone. A trace that baked an
    input in as a constant gives such outputs."""
    weights = {t.name for t in model.graph.initializer}
    reached = {v.name for v in model.graph.input if v.name not in weights}
    for node in in_deployable_form(model).graph.node:
        if any(name in reached for name in names_read(node)):
            reached.update(name for name in node.output if name)
    return [v.name for v in model.graph.output if v.name not in reached]
