"""Nodes with a body (Loop, If, Scan): the fp16 artifact keeps them, bodies included, in fp32 when its
fallback is data-driven. The activation statistics that decide the fallback are read from the main
graph only (a body's tensors are no graph outputs to expose), so nothing in a body was ever measured:
hunt20's Loop body scaled a Relu by 3e4 (1.6e5, beyond fp16) and back, the converter put the body
in fp16 with no fallback, and cpu-fp16-emu, which rounds the main graph only, passed it at 71 dB."""

from __future__ import annotations

from collections.abc import Iterator

import onnx
import onnx_ir as ir


def nodes_with_bodies(graph: ir.Graph) -> Iterator[ir.Node]:
    """The main graph's nodes that hold a graph attribute (a Loop/Scan body, an If branch)."""
    for node in graph:
        if any(_bodies(attribute) for attribute in node.attributes.values()):
            yield node


def outer_producers(graph: ir.Graph, blocked) -> Iterator[tuple[ir.Node, str]]:
    """(producer, tensor) for each main-graph producer of a float tensor that the body of a node in
    `blocked` reads from outside (by name, not as an input: the converter casts a blocked node's
    inputs only, and an fp32 If branch read the fp16 output of the Conv before it)."""
    for node in [node for node in graph if node in blocked]:
        for body in (body for attribute in node.attributes.values() for body in _bodies(attribute)):
            for inner in body.all_nodes():
                for value in inner.inputs:
                    producer = value.producer() if value is not None else None
                    if producer is not None and producer.graph is graph and value.dtype == ir.DataType.FLOAT:
                        yield producer, value.name


def with_body_nodes(graph: ir.Graph, names: set[str]) -> set[str]:
    """`names` and the names of every node inside the bodies of the nodes so named: a weight of the
    main graph that a blocked body reads stays fp32 for it (a body reads outer values by name)."""
    inside = {name for node in graph if node.name in names for attribute in node.attributes.values()
              for body in _bodies(attribute) for name in _node_names(body)}
    return names | inside


def _bodies(attribute) -> list[ir.Graph]:
    if attribute.type == ir.AttributeType.GRAPH:
        return [attribute.as_graph()]
    return list(attribute.as_graphs()) if attribute.type == ir.AttributeType.GRAPHS else []


def _node_names(body: ir.Graph) -> Iterator[str]:
    for node in body.all_nodes():
        yield node.name


def fp32_body_reads(model: onnx.ModelProto, blocked: set[str]) -> onnx.ModelProto:
    """`model` (the converter's output) with the bodies of the blocked nodes reading the fp32 outputs
    of blocked producers. The converter renames a blocked node's output and gives its old name to a
    Cast to fp16 for the converted readers; a body reads by name, so the fp32 body read fp16 (an
    invalid artifact: "bound to different types")."""
    producers = {name: node for node in model.graph.node for name in node.output}
    fp32_of = {node.output[0]: node.input[0] for node in model.graph.node
               if node.op_type == "Cast" and node.input and node.input[0] in producers and producers[node.input[0]].name in blocked
               and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in node.attribute)}
    for node in model.graph.node:
        if node.name in blocked and fp32_of:
            for body in _proto_bodies(node):
                _read_through(body, fp32_of)
    return model


def _proto_bodies(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [body for a in node.attribute for body in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))]


def _read_through(body: onnx.GraphProto, names: dict[str, str]) -> None:
    """Every read of a key of `names` in `body` (nested bodies too) reads its value instead (ONNX names
    are unique across a graph and its bodies, so no name inside shadows one outside)."""
    for output in body.output:
        output.name = names.get(output.name, output.name)
    for node in body.node:
        for index, name in enumerate(node.input):
            node.input[index] = names.get(name, name)
        for inner in _proto_bodies(node):
            _read_through(inner, names)
