"""The real TensorRT ONNX parser of the selected flavour, as values: which nodes it rejects and why.

Written over the TensorRT API instead of Polygraphy's NetworkFromOnnxPath because a check needs
each rejected node's index, name, op and message as data; Polygraphy logs them and raises one
generic exception. Everything here runs without a GPU (TensorRT-RTX parses and builds ahead of time).

The parser checks every node for ops it has no importer or plugin for (all are reported), then
imports nodes in order and stops at the first one it cannot import: fixing that one may reveal the
next, which the failure message says.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import time

import onnx

from ..protos import all_nodes, node_label, read_onnx
from .flavour import Flavour

# Known parser and builder messages -> the fix, first match wins. The messages are TensorRT's
# own (onnx-tensorrt's importers), identical in TensorRT 10 and TensorRT-RTX 1.x where both have them.
FIXES = (
    (r"must resolve to a build-time constant|is not a constant|must be an initializer|only supports the \w+ input as an initializer",
     "make that input a constant (an initializer), e.g. export with constant axes/scales or fold it with onnxsim"),
    (r"support(s)? (mode|more) than \d+ outputs? for LayerNormalization|LayerNormalization",
     "re-export LayerNormalization with one output (drop Mean and InvStdDev)"),
    (r"outputs for MaxPool", "re-export MaxPool without the Indices output"),
    (r"Attention nodes with one output", "re-export Attention with its single output (no present_key/value, no qk_matmul_output)"),
    (r"training_mode", "export the model in eval mode (training_mode constant false)"),
    (r"Plugin not found|plugin creator|plugin was not found", "this op needs a TensorRT plugin; replace the node, or register a plugin (TensorRT-RTX ships no plugin library)"),
    (r"input has type Int32 but must have type FP8",
     "keep the bias float: TensorRT dequantizes int8, uint8, int4, fp8 and fp4 only (onnxruntime quantize_static: "
     "extra_options={'QuantizeBias': False})"),
    (r"convert ONNX da[te]a? type|Unsupported data type|Unsupported ONNX data type|UINT8 types for intermediate|input has type UInt",
     "cast the tensor to a type TensorRT takes (float32, float16, bfloat16, int32, int64, bool; int8/fp8/int4/fp4 only through Q/DQ)"),
    (r"Failed to import initializer",
     "store it in a type TensorRT holds (float32, float16, bfloat16, int32, int64, bool; int8/int4/fp8 only as a DequantizeLinear "
     "input, zero point 0): int16, uint16 and uint4 are no TensorRT quantization types, quantize to int8 (or int4 weights)"),
    (r"dilations", "use pooling without dilations"),
    (r"shape tensor|no optimization profile", "give the shape input's values with --inputs (they go into the optimization profile)"),
    (r"zero_point. which is not an initializer|zero_point", "store the zero point as an initializer"),
)


# A CUDA call failing (no GPU here) and TensorRT's own validation of the network (which runs the
# same with a GPU), as they appear in its messages.
_CUDA_MARKERS = ("Cuda Runtime", "catchCudaError", "cudaError")
_VALIDATION_MARKERS = ("API Usage Error", "Shape Error")


def failed_on_cuda(messages) -> bool:
    """Whether a failure is a CUDA call failing, so TensorRT gave no verdict (TensorRT-RTX's
    ahead-of-time parse and build run some shape and constant computations on the device), rather
    than a rejection. After a validation error (an API usage or shape error: a uint8 Add, an axes
    input that is not a constant) its error path makes a CUDA call too; that failure is a
    rejection all the same (59 of onnx's node tests had been counted as "needs a GPU", no verdict)."""
    messages = list(messages)
    cuda = [min((m.find(k) for k in _CUDA_MARKERS if k in m), default=-1) for m in messages]
    validated = any(v in m[: c if c >= 0 else len(m)] for m, c in zip(messages, cuda) for v in _VALIDATION_MARKERS)
    return any(c >= 0 for c in cuda) and not validated


def fix_for(message: str) -> str:
    """The known fix for a parser or builder message, else ""."""
    for pattern, fix in FIXES:
        if re.search(pattern, message):
            return fix
    return ""


# onnxruntime's contrib ops whose ONNX namesake (same op type, default domain) the parser imports them as,
# with other inputs: ORT's Attention takes the input and packed QKV weights, ONNX's (opset 23) Q, K and V;
# ORT's RotaryEmbedding takes position_ids second, ONNX's cos_cache. Their Q/DQ and Gelu mean the same.
_NAMESAKES = {"com.microsoft::Attention": "Attention (opset 23)", "com.microsoft::RotaryEmbedding": "RotaryEmbedding (opset 23)"}


@dataclasses.dataclass(frozen=True)
class ParserIssue:
    """One node the parser rejected: its index in the graph, name, op, the parser's message and code."""

    node_index: int
    node_name: str
    op_type: str
    message: str
    code: str

    @property
    def fix(self) -> str:
        if fix := fix_for(self.message):
            return fix
        if self.op_type in _NAMESAKES:  # the parser ignores the domain: the ONNX op's importer rejected its inputs
            return (f"{self.op_type} is onnxruntime's fused op, which TensorRT's parser imported as the ONNX op "
                    f"{_NAMESAKES[self.op_type]}, whose inputs and meaning differ; deploy the model as it was before "
                    f"onnxruntime.transformers.optimizer, or register a plugin")
        return ""

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"node '{self.node_name}' ({self.op_type}, #{self.node_index}): {self.message}{fix}"


@dataclasses.dataclass(frozen=True)
class NetworkInput:
    """A network input as the parser made it: -1 marks a dynamic dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    is_shape_tensor: bool


@dataclasses.dataclass(frozen=True)
class ParseResult:
    """The parser's verdict: `issues` is empty exactly when it accepted the model."""

    flavour: Flavour
    issues: tuple[ParserIssue, ...]
    seconds: float
    layers: int
    inputs: tuple[NetworkInput, ...]
    outputs: tuple[NetworkInput, ...] = ()  # the network's outputs, as the parser typed them

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def needs_gpu(self) -> bool:
        """The parse failed on a CUDA call: no verdict on this machine (see failed_on_cuda)."""
        return not self.ok and failed_on_cuda(issue.message for issue in self.issues)

    def failure(self) -> str:
        head = f"{self.flavour.label} ONNX parser rejects {len(self.issues)} node(s):"
        lines = [head, *(f"  {issue.line()}" for issue in self.issues)]
        lines.append("  (every op is checked up front, but import stops at the first node that fails: later nodes may fail too)")
        return "\n".join(lines)


class CapturingLogger:
    """A TensorRT ILogger subclass instance keeping messages of severity ERROR and worse (TensorRT's
    default logger prints to stderr, which would interleave with pytest's output)."""

    def __new__(cls, trt):
        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, message):
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(message)

        return _Logger()


@dataclasses.dataclass
class ParsedNetwork:
    """The parser's network, kept alive with the builder, parser and logger it depends on (the
    parser owns the weight memory the network points to), for build.py."""

    trt: object
    builder: object
    network: object
    parser: object
    logger: object
    result: ParseResult


def parse_network(path: str | os.PathLike, flavour: Flavour) -> ParsedNetwork:
    """Parse `path` (external data next to it is read by the parser) into a strongly typed network.
    Strongly typed: precision comes from the ONNX file; it is the only network TensorRT-RTX and
    TensorRT 11 make, and TensorRT 10 makes it too."""
    trt = flavour.module()
    logger = CapturingLogger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    started = time.perf_counter()
    accepted = parser.parse_from_file(os.fspath(path))
    seconds = time.perf_counter() - started
    issues = () if accepted else _issues(parser, path, logger)
    result = ParseResult(flavour, issues, seconds, network.num_layers, _inputs(network), _outputs(network))
    return ParsedNetwork(trt, builder, network, parser, logger, result)


def parse_model(path: str | os.PathLike, flavour: Flavour) -> ParseResult:
    """The parser's verdict on `path` (see parse_network)."""
    return parse_network(path, flavour).result


def _issues(parser, path, logger) -> tuple[ParserIssue, ...]:
    model = read_onnx(path)
    nodes, everywhere = _nodes(model), collections.Counter(node.op_type for node in all_nodes(model))
    found = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        op = error.node_operator() or _importer_op(error.func()) or "?"
        node = error.node() if error.node() >= 0 else _only_node_of(op, nodes, everywhere)
        name, domain, _ = nodes[node] if 0 <= node < len(nodes) else ("", "", "")
        if op == "Initializers" and (initializer := _failed_initializer(error.desc(), model)):
            name, op = initializer
        found.append(ParserIssue(node, error.node_name() or name or f"<unnamed {op} #{node}>", f"{domain}::{op}" if domain else op, error.desc(), error.code().name))
    if not found:  # parse() returned False without a recorded error: the logger has the reason
        found.append(ParserIssue(-1, "<model>", "?", " | ".join(logger.errors) or "parse failed without a message", "UNKNOWN"))
    return tuple(found)


def _failed_initializer(message: str, model) -> tuple[str, str] | None:
    """(label, "TYPE initializer") of the initializer importInitializers names at the end of its
    message ("Failed to import initializer: NAME"), which belongs to no node: an int16 zero point
    or a uint4 weight TensorRT cannot hold."""
    match = re.search(r"Failed to import initializer: (\S+)\s*$", message)
    tensor = next((t for t in model.graph.initializer if match and t.name == match.group(1)), None)
    if tensor is None:
        return None
    return f"initializer {tensor.name}", f"{onnx.TensorProto.DataType.Name(tensor.data_type)} initializer"


def _nodes(model) -> list[tuple[str, str, str]]:
    """(name, custom domain, op type) of the main graph's nodes, by index: the parser reports unnamed
    nodes with an empty name, and ops without their domain ("MyPlugin" for com.example::MyPlugin)."""
    return [(node_label(node), "" if node.domain in ("", "ai.onnx") else node.domain, node.op_type) for node in model.graph.node]


def _importer_op(func: str) -> str:
    """The op of an error raised inside an op importer ("importScatterElements"): some errors carry
    neither node nor op (ScatterElements' "Unsupported reduction type"), only the importer."""
    return func[len("import"):] if func.startswith("import") and len(func) > len("import") else ""


def _only_node_of(op: str, nodes: list[tuple[str, str, str]], everywhere: collections.Counter) -> int:
    """The index of the model's only node of `op`, else -1 (which of several failed is unknown). Nodes
    of Loop/If/Scan bodies and local functions count too: one there may be the one that failed."""
    indexes = [index for index, (_, _, op_type) in enumerate(nodes) if op_type == op]
    return indexes[0] if len(indexes) == 1 and everywhere[op] == 1 else -1


def _inputs(network) -> tuple[NetworkInput, ...]:
    tensors = (network.get_input(index) for index in range(network.num_inputs))
    return tuple(NetworkInput(t.name, tuple(t.shape), t.dtype.name, bool(t.is_shape_tensor)) for t in tensors)


def _outputs(network) -> tuple[NetworkInput, ...]:
    tensors = (network.get_output(index) for index in range(network.num_outputs))
    return tuple(NetworkInput(t.name, tuple(t.shape), t.dtype.name, False) for t in tensors)


# The network's type of each ONNX tensor type TensorRT holds as it is; any other (DOUBLE) it retypes.
_TRT_TYPE = {"FLOAT": "FLOAT", "FLOAT16": "HALF", "BFLOAT16": "BF16", "INT32": "INT32", "INT64": "INT64", "BOOL": "BOOL",
             "UINT8": "UINT8", "INT8": "INT8", "FLOAT8E4M3FN": "FP8", "INT4": "INT4"}


def retyped_io(result: ParseResult, model: onnx.ModelProto) -> list[str]:
    """Graph inputs and outputs whose type the network changed (TensorRT has no float64: the parser
    makes a DOUBLE input or output FLOAT, so a caller that feeds or reads float64 buffers reads the
    engine wrong), one phrase each."""
    declared = {v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
                for v in [*model.graph.input, *model.graph.output] if v.type.HasField("tensor_type")}
    found = []
    for kind, tensors in (("input", result.inputs), ("output", result.outputs)):
        for tensor in tensors:
            onnx_type = declared.get(tensor.name)
            if onnx_type is not None and _TRT_TYPE.get(onnx_type, onnx_type) != tensor.dtype:
                found.append(f"{kind} '{tensor.name}' is {onnx_type} in the model, {tensor.dtype} in the engine")
    return found
