"""cpu-fp16-emu inside Loop/If/Scan bodies: Cast(fp16)->Cast(fp32) after each body tensor the fp16
artifact stores in fp16, and fp16-rounded copies of the weights such a body reads from outside.

The emulation of the main graph (targets/fp16.py) matches nodes by name and rounds their inputs; a
body's tensors are no graph edges it sees. hunt20: under --fp16-no-fallback the converter put a
Loop body in fp16 whose activation reached 1.6e5 (inf in fp16), and cpu-fp16-emu and bisect, which
exist to show that overflow, passed the model at 71 dB."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def emulate_bodies(model: onnx.ModelProto, artifact: onnx.ModelProto) -> onnx.ModelProto:
    """`model` (the emulation of the main graph) with the bodies of its nodes rounded where the node
    of `artifact` of the same label (its name, else `OpType(first output)`: convert_to_fp16 names
    unnamed nodes so) stores their tensors in fp16. `model` is edited in place."""
    if not has_bodies(model):
        return model
    typed = onnx.shape_inference.infer_shapes(artifact)  # types every body tensor of the artifact
    artifact_nodes = {_label(node): node for node in typed.graph.node}
    fp16_weights = {init.name for init in artifact.graph.initializer if init.data_type == TensorProto.FLOAT16}
    weights = {init.name: init for init in model.graph.initializer}
    rounded: dict[str, str] = {}

    def rounded_weight(name: str) -> str:
        if name not in rounded:
            with np.errstate(over="ignore"):
                array = numpy_helper.to_array(weights[name]).astype(np.float16).astype(np.float32)
            rounded[name] = f"{name}.fp16_stored_in_body"
            model.graph.initializer.append(numpy_helper.from_array(array, rounded[name]))
        return rounded[name]

    def emulate(body: onnx.GraphProto, artifact_body: onnx.GraphProto) -> None:
        half = {v.name for v in [*artifact_body.input, *artifact_body.output, *artifact_body.value_info]
                if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
        inner = {name for node in body.node for name in node.output} | {v.name for v in body.input}
        artifact_inner = {_label(node): node for node in artifact_body.node}
        nodes = []
        for node in body.node:
            for index, name in enumerate(node.input):
                if name and name not in inner and name in fp16_weights and weights.get(name) is not None \
                        and weights[name].data_type == TensorProto.FLOAT:
                    node.input[index] = rounded_weight(name)
            for sub, artifact_sub in zip(_bodies(node), _bodies(artifact_inner.get(_label(node), onnx.NodeProto()))):
                emulate(sub, artifact_sub)
            nodes.append(node)
            for index, name in enumerate(node.output):
                if name in half:
                    node.output[index] = f"{name}.exact"
                    nodes += [helper.make_node("Cast", [f"{name}.exact"], [f"{name}.fp16"], to=TensorProto.FLOAT16,
                                               name=f"{name}/fp16_storage/to_fp16"),
                              helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT, name=f"{name}/fp16_storage/to_fp32")]
        del body.node[:]
        body.node.extend(nodes)

    for node in model.graph.node:
        counterpart = artifact_nodes.get(_label(node))
        if counterpart is not None:
            for body, artifact_body in zip(_bodies(node), _bodies(counterpart)):
                emulate(body, artifact_body)
    return model


def _bodies(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [body for a in node.attribute for body in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs))]


def has_bodies(model: onnx.ModelProto) -> bool:
    return any(_bodies(node) for node in model.graph.node)


def _label(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"
