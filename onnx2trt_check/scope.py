"""What the checks cover, decided once per model when it is loaded.

In scope: a model onnx can read (IR version up to the installed onnx's) whose graph inputs and
outputs are tensors of the numeric and bool types numpy holds natively (IO_TYPES), built from ONNX
operators and any custom domain (TensorRT plugins, contrib ops: the op table reports those).

Out of scope, refused with OutOfScopeError before any check runs:
* sequence, map, optional and sparse inputs or outputs: every comparison, artifact and tolerance
  is per tensor, and TensorRT's I/O bindings are tensors;
* bfloat16, float8/6/4, 4-/2-bit integer, string and complex inputs or outputs: numpy cannot hold
  them without extra packages, so no data can be made or compared;
* operators of the ai.onnx.ml domain (scikit-learn and other classical-ML exports): TensorRT has
  none of them, so the ONNX -> TensorRT path does not exist for such a graph;
* an IR version newer than the installed onnx reads: its checker, shape inference and every graph
  tool would misread the file;
* random operators (RandomNormal[Like], RandomUniform[Like], Bernoulli, Multinomial), and a Dropout
  in training mode (a model exported without model.eval()): every run and every engine draws other
  values, so no output comparison holds.

Valid models inside the scope can still make a check not apply (an fp16 artifact of a model that
already computes in fp16, of a model without nodes): those checks skip with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import onnx
from onnx import TensorProto, numpy_helper

from .errors import OutOfScopeError
from .protos import all_nodes, node_label

IO_TYPES = frozenset(
    getattr(TensorProto, name)
    for name in ("FLOAT", "FLOAT16", "DOUBLE", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL")
)
ML_DOMAIN = "ai.onnx.ml"
# Their values differ between runs and between engines (ONNX Runtime seeds each session alike, so
# two runs of the same graph agree, and its fp16 artifact then "failed" at 14 dB: a verdict on the
# random stream, not on fp16).
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"})
_KINDS = {"sequence_type": "sequence", "map_type": "map", "optional_type": "optional value", "sparse_tensor_type": "sparse tensor"}


def check_scope(proto: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Raise OutOfScopeError (one line: what, why, what to do) for a model outside the scope."""
    problem = scope_problem(proto)
    if problem:
        raise OutOfScopeError(f"'{path}' is outside what onnx2trt_check checks: {problem}")


def scope_problem(proto: onnx.ModelProto) -> str | None:
    """Why the model is out of scope, or None."""
    if proto.ir_version > onnx.IR_VERSION:
        return (f"IR version {proto.ir_version} is newer than the installed onnx {onnx.__version__} reads (IR {onnx.IR_VERSION}); "
                "upgrade onnx or re-export the model with an older IR version")
    for kind, values in (("input", _real_inputs(proto.graph)), ("output", proto.graph.output)):
        for value in values:
            problem = _io_problem(kind, value)
            if problem:
                return problem
    names = [value.name for value in proto.graph.output]
    if twice := next((name for name in names if names.count(name) > 1), None):
        # onnx.checker and ONNX Runtime take it, but the graph IR every artifact goes through does not
        return f"output '{twice}' is listed twice among the graph outputs; list each output once"
    ml_ops = sorted({node.op_type for node in all_nodes(proto) if node.domain == ML_DOMAIN})
    if ml_ops:
        return (f"it uses ai.onnx.ml operators ({', '.join(ml_ops[:5])}), which TensorRT does not have; "
                "a classical-ML graph has no ONNX -> TensorRT path (check it with ONNX Runtime alone)")
    if random := next((node for node in all_nodes(proto) if node.op_type in RANDOM_OPS and node.domain in ("", "ai.onnx")), None):
        return (f"it draws random values ({_label(random)}): every run, and every engine, draws its own, "
                "so no comparison of outputs holds; draw them outside the model and feed them as an input")
    if dropout := _training_dropout(proto):
        return (f"it draws random values ({_label(dropout)} in training mode): every run, and every engine, drops "
                "other elements, so no comparison of outputs holds; export the model in eval mode (model.eval() "
                "before torch.onnx.export)")
    return None


def _label(node: onnx.NodeProto) -> str:
    return node_label(node) if not node.name else f"{node.op_type} '{node.name}'"


def _training_dropout(proto: onnx.ModelProto) -> onnx.NodeProto | None:
    """A Dropout (opset 12+) whose training_mode input is not a constant false and whose ratio is
    not a constant 0: it zeroes a fresh random mask every run. A torch model exported in train mode
    with dynamo=True has one per dropout layer (an eval() model inside a wrapper module left in
    train mode is enough); a BART exported so failed every target at 10 dB, each a verdict on the
    masks, and "trt_ops" named the Dropout as if the model were otherwise sound."""
    for nodes, constants in _scopes(proto):
        for node in nodes:
            if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx") or len(node.input) < 3 or not node.input[2]:
                continue  # no training_mode input: inference mode, an identity
            training, ratio = constants.get(node.input[2]), constants.get(node.input[1]) if node.input[1] else 0.5
            if (training is None or bool(training)) and (ratio is None or float(ratio) > 0):
                return node
    return None


def _scopes(proto: onnx.ModelProto) -> Iterator[tuple[list[onnx.NodeProto], dict[str, object]]]:
    """Each graph's nodes with the scalar constants they can see: their graph's and its enclosing
    graphs', never another function's (a local function is a namespace of its own: read as one
    table, a function's Constant 't' = false made the main graph's training Dropout on 't' pass)."""
    stack = [(proto.graph.node, proto.graph.initializer, {})] + [(function.node, [], {}) for function in proto.functions]
    while stack:
        nodes, initializers, outer = stack.pop()
        constants = _scalar_constants(nodes, initializers, outer)
        yield list(nodes), constants
        for node in nodes:
            for attribute in node.attribute:
                graphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
                stack.extend((graph.node, graph.initializer, constants) for graph in graphs)


def _scalar_constants(nodes, initializers, outer: dict[str, object]) -> dict[str, object]:
    """`outer` and one graph's one-element initializers and Constant outputs (and the Identity, Not
    and Cast of those), by name: what a Dropout's ratio and training_mode usually are. A value that
    cannot be read here (external data) is left out, which reads as "may be random"."""
    values = dict(outer)
    for tensor in initializers:
        values.update(_scalar(tensor.name, tensor))
    for node in nodes:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values.update(_scalar(node.output[0], attr.t))
                elif attr.name in ("value_float", "value_int"):  # ratio = Constant<value_float = 0.0>
                    values[node.output[0]] = attr.f if attr.name == "value_float" else attr.i
        elif node.op_type in _FOLDED and node.input and node.input[0] in values and node.output:
            values[node.output[0]] = _FOLDED[node.op_type](values[node.input[0]], node)
    return values


# Written by hand (not onnx's reference evaluator): three scalar ops on Python values, and nothing
# more is wanted than "is this a constant false / 0".
_FOLDED = {
    "Identity": lambda value, node: value,
    "Not": lambda value, node: not value,
    "Cast": lambda value, node: bool(value) if _cast_to(node) == TensorProto.BOOL else value,
}


def _cast_to(node: onnx.NodeProto) -> int:
    return next((attr.i for attr in node.attribute if attr.name == "to"), 0)


def _scalar(name: str, tensor: onnx.TensorProto) -> dict[str, object]:
    try:
        array = numpy_helper.to_array(tensor)
    except Exception:  # external data not loaded here, or an unreadable tensor: unknown
        return {}
    return {name: array.reshape(()).item()} if array.size == 1 else {}


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def _io_problem(kind: str, value: onnx.ValueInfoProto) -> str | None:
    which = value.type.WhichOneof("value")
    if which is None:
        return None if kind == "output" else f"input '{value.name}' declares no type; re-export the model with typed inputs"
    if which != "tensor_type":
        described = _describe(value.type)
        hint = " (skl2onnx: options={'zipmap': False})" if described.endswith("of maps") else ""
        return f"{kind} '{value.name}' is {described}, and the checks compare tensors only; re-export the model with tensor {kind}s{hint}"
    elem = value.type.tensor_type.elem_type
    if elem not in IO_TYPES:
        name = TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else str(elem)
        return (f"{kind} '{value.name}' is a {name} tensor; inputs and outputs must be float, float16, double, "
                f"integer or bool tensors: cast it inside the model")
    return None


def _describe(type_proto: onnx.TypeProto) -> str:
    """'a sequence of maps', 'an optional', 'a sparse tensor'."""
    kind = _KINDS.get(type_proto.WhichOneof("value"), "non-tensor value")
    if kind == "sequence" and type_proto.sequence_type.elem_type.WhichOneof("value") in _KINDS:
        kind += f" of {_KINDS[type_proto.sequence_type.elem_type.WhichOneof('value')]}s"
    return ("an " if kind[0] in "aeiou" else "a ") + kind
