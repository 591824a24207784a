"""Load, validate and fingerprint a model, and resolve its input specs.

Every problem with the file itself becomes a one-line `ModelError` that names the fix. The model
file is only ever opened for reading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path, PureWindowsPath

import google.protobuf.message
import numpy as np
import onnx
import onnx.inliner
from onnx import helper

from .errors import ModelError
from .protos import all_nodes, raw_data_bytes, read_onnx
from .scope import check_scope
from .validate import not_empty

_HASH_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A graph input with every dim resolved to an int.

    `defaulted` names the dims that were symbolic and set by the leading-batch rule, `settled` the
    ones the input data fixed (the summary reports both); `flexible` holds the indexes of dims the
    model leaves open and no --input-shape fixed, where feeds may differ from `shape`. `dtype` is a
    numpy dtype, or None when numpy has no equivalent."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | None
    onnx_type: str
    defaulted: tuple[str, ...] = ()
    settled: tuple[str, ...] = ()
    flexible: tuple[int, ...] = ()


@dataclasses.dataclass
class LoadedModel:
    path: Path
    proto: onnx.ModelProto
    sha256: str
    inlined_calls: int = 0  # calls of model-local functions inlined into `proto` (inlined)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(path: str | os.PathLike, option: str = "--model") -> LoadedModel:
    """Read a model with its external data; raise ModelError for anything that is not a usable ONNX
    model, OutOfScopeError for a valid model the checks do not cover (scope.check_scope). `option`
    names where the path was given (--reference-model was told to check its --model path)."""
    path = Path(not_empty(path, "the model path", required=True))
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist; check the {option} path")
    if path.is_dir() and option != "--model":
        raise ModelError(f"{option} '{path}' is a folder; pass one ONNX model file")
    if path.is_dir():
        raise ModelError(f"'{path}' is a folder; pass the folder to --model to check every .onnx in it")
    path = path.resolve()  # a symlinked model is read where it lies: its external data is there, and onnx refuses linked data
    proto = _parse(path)
    check_scope(proto, path)
    _load_external_data(proto, path)
    proto, calls = inlined(proto)
    return LoadedModel(path=path, proto=proto, sha256=sha256_of(path), inlined_calls=calls)


def inlined(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The model with its local functions inlined, as TensorRT's parser and ONNX Runtime inline them,
    and how many calls were inlined. Left as they were, the BatchNormalizations, Convs and MatMuls
    inside them were out of every transform's and the quantizer's sight: a TorchScript export with
    export_modules_as_functions skipped fold_conv_bn as 'no Conv -> BatchNormalization pair in the
    model' and quantized 2 of its 6 layers, the rest left in float without a word. Where onnx's
    inliner refuses the model, it stays as written (ONNX Runtime still runs it)."""
    local = {(function.domain, function.name) for function in proto.functions}
    calls = sum((node.domain, node.op_type) in local for node in all_nodes(proto))
    if not calls:
        return proto, 0
    try:
        return onnx.inliner.inline_local_functions(_with_default_attributes(proto), convert_version=True), calls
    except Exception:  # noqa: BLE001 - onnx's inliner errors: the model as written is still a model
        return proto, 0


def _with_default_attributes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose calls of local functions name every attribute the function gives a default
    (attribute_proto) and the call leaves out. onnx's inliner drops those defaults (review19: a
    LeakyRelu <alpha = @alpha> of a function whose alpha defaults to 0.5 came out with LeakyRelu's
    own 0.01, and quantize wrote and 'verified' an int8 model of that other function)."""
    defaults = {(f.domain, f.name, f.overload): f.attribute_proto for f in proto.functions if len(f.attribute_proto)}
    if not defaults:
        return proto
    filled = onnx.ModelProto()
    filled.CopyFrom(proto)
    for node in all_nodes(filled):
        own = {default.name: default for default in defaults.get((node.domain, node.op_type, node.overload), ())}
        if any(a.ref_attr_name and a.name in own for a in node.attribute):
            raise ValueError("a default behind an attribute reference the inliner may leave unset")  # kept as written
        given = {attribute.name for attribute in node.attribute}
        node.attribute.extend(default for name, default in own.items() if name not in given)
    return filled


def _parse(path: Path) -> onnx.ModelProto:
    try:
        proto = read_onnx(path)
    except (google.protobuf.message.DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        _refuse_text_format(path)
        raise ModelError(
            f"'{path}' is not a valid ONNX model ({_first_line(exc)}); the file may be truncated or "
            "not ONNX: re-export it"
        ) from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"'{path}' parsed as an empty ONNX model (no nodes, no outputs); it is not ONNX or is truncated: re-export it")
    return proto


def _refuse_text_format(path: Path) -> None:
    """A ModelError when `path` is an ONNX model in one of onnx's text formats (by its extension):
    ONNX Runtime and TensorRT's parser read binary protobuf only."""
    try:
        with warnings.catch_warnings():  # "The onnxtxt format is experimental"
            warnings.simplefilter("ignore")
            onnx.load(str(path), load_external_data=False)  # the format onnx infers from the extension
    except Exception:  # noqa: BLE001 - not a text-format model either: the caller's message stands
        return
    raise ModelError(f"'{path}' is an ONNX model in a text format, which ONNX Runtime and TensorRT's parser do not read; "
                     f"save it as binary ONNX first: python -c \"import onnx; onnx.save(onnx.load('{path}'), '{path.with_suffix('.onnx')}')\"")


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    for tensor in _external_tensors(proto):
        check_external_data(tensor, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:  # onnx's own refusals (ValidationError, OSError, ValueError) past our checks
        raise ModelError(f"external data of '{path}' cannot be read ({_first_line(exc)}); re-export the model") from None


def check_external_data(tensor: onnx.TensorProto, path: Path) -> None:
    """The rules onnx enforces when it reads external data (a relative location inside the model's
    folder, no symbolic link, a file long enough), checked first so each gets a message that
    names the tensor, the file and the fix."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    where = f"initializer '{tensor.name}' of '{path}' keeps its data in '{location}'"
    if not location or os.path.isabs(location) or PureWindowsPath(location).drive:
        raise ModelError(f"{where}, which is not a path relative to the model; re-save the model with its data file beside it")
    base = Path(os.path.abspath(path.parent))
    file = Path(os.path.normpath(base / location))
    if base not in file.parents:
        raise ModelError(f"{where}, outside the model's folder, which onnx refuses to read; move the data file beside the model and re-save it")
    if any((base / Path(*Path(location).parts[: i + 1])).is_symlink() for i in range(len(Path(location).parts))):
        raise ModelError(f"{where}, a symbolic link, which onnx refuses to read; copy the data file itself beside the model")
    if not file.is_file():
        raise ModelError(f"{where}, which is missing next to the model; copy the external data file beside it")
    _check_length(tensor, info, file, where)


def _check_length(tensor: onnx.TensorProto, info: dict[str, str], file: Path, where: str) -> None:
    try:
        offset, length = int(info.get("offset", 0)), (int(info["length"]) if "length" in info else None)
    except ValueError:
        raise ModelError(f"{where} at a malformed offset/length {info.get('offset')!r}/{info.get('length')!r}; re-export the model") from None
    available = file.stat().st_size - offset
    present = available if length is None else min(length, available)
    needed = tensor_bytes(tensor)
    if offset < 0 or present < 0 or (needed is not None and present < needed) or (length is not None and length > available):
        declared = f"{needed} bytes for its {list(tensor.dims)} {onnx.TensorProto.DataType.Name(tensor.data_type)} values"
        raise ModelError(f"{where}, which is shorter than declared ({declared}, {max(present, 0)} present from offset {offset}); the data file is truncated or belongs to another export: re-export the model")


def tensor_bytes(tensor: onnx.TensorProto) -> int | None:
    try:
        return raw_data_bytes(tensor)
    except (KeyError, TypeError, ValueError):
        return None  # strings: no fixed size


def external_data_files(path: Path) -> set[Path]:
    """The files a model keeps its weights in (resolved), read from its header; none when it cannot
    be parsed (whoever loads it reports that)."""
    try:
        proto = read_onnx(path)
    except Exception:  # noqa: BLE001 - any unreadable model: loading it later names the problem
        return set()
    folder = Path(path).resolve().parent
    locations = {entry.value for t in _external_tensors(proto) for entry in t.external_data if entry.key == "location"}
    # realpath: Path.resolve raises on a data file that is a symlink loop (optimize -o over an existing file crashed)
    return {Path(os.path.realpath(folder / location)) for location in locations}


def _external_tensors(proto: onnx.ModelProto):
    return [t for t in onnx.external_data_helper._get_all_tensors(proto) if onnx.external_data_helper.uses_external_data(t)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old exporters list weights as inputs)."""
    initializers = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


Shapes = dict[str, tuple[int, ...]]


def resolve_input_specs(proto: onnx.ModelProto, overrides: Shapes | None = None, *, data_shapes: Shapes | None = None) -> list[InputSpec]:
    """Input specs with static shapes. Each dim the model leaves open takes, in this order, its
    --input-shape override, the data's size (`data_shapes`: one feed's shape per input, from the
    input data), or 1 for a leading (batch) dim; any other open dim is a ModelError asking for
    `--input-shape name:1x3x224x224`."""
    overrides = dict(overrides or {})
    data_shapes = data_shapes or {}
    inputs = graph_inputs(proto)
    named = _named_sizes(inputs, overrides, data_shapes)
    specs = [_resolve_one(value, overrides.pop(value.name, None), data_shapes.get(value.name), named) for value in inputs]
    if overrides:
        names = ", ".join(s.name for s in specs) or "none"
        raise ModelError(f"--input-shape names '{next(iter(overrides))}', which is not an input of the model (inputs: {names})")
    return specs


def _named_sizes(inputs: list[onnx.ValueInfoProto], overrides: Shapes, data_shapes: Shapes) -> dict[str, int]:
    """The size --input-shape or the data give each dim name: a name declared by several inputs is
    one size, so an input they leave open takes it (not its own default of 1, which ONNX Runtime
    may broadcast and TensorRT refuses)."""
    named: dict[str, tuple[int, str, int]] = {}
    for value in inputs:
        given = overrides.get(value.name) or data_shapes.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if given is None or len(given) != len(dims):
            continue
        for axis, (dim, size) in enumerate(zip(dims, given)):
            first = named.setdefault(dim.dim_param, (size, value.name, axis)) if dim.dim_param else (size, "", axis)
            if first[0] != size:
                whose = (f"input '{value.name}' gets sizes {first[0]} and {size} for dim '{dim.dim_param}' (axes {first[2]} and {axis})"
                         if first[1] == value.name else  # a square image [N,3,S,S] fed 7x5 (redteam14)
                         f"inputs '{first[1]}' and '{value.name}' get sizes {first[0]} and {size} for dim '{dim.dim_param}'")
                raise ModelError(f"{whose}, which the model declares as one size; give both the same size (--input-shape or the data)")
    return {name: size for name, (size, _, _) in named.items()}


def _resolve_one(value: onnx.ValueInfoProto, override: tuple[int, ...] | None, data_shape: tuple[int, ...] | None,
                 named: dict[str, int]) -> InputSpec:
    tensor_type = value.type.tensor_type
    elem = tensor_type.elem_type
    onnx_type = onnx.TensorProto.DataType.Name(elem)
    dtype = _numpy_dtype(elem)
    if override is not None:
        return InputSpec(value.name, _check_batch(value, _check_override(value, override)), dtype, onnx_type)
    dims = list(tensor_type.shape.dim) if tensor_type.HasField("shape") else None
    if dims is None and data_shape is not None:
        return InputSpec(value.name, tuple(data_shape), dtype, onnx_type, settled=("all",), flexible=tuple(range(len(data_shape))))
    if dims is None:
        raise ModelError(f"input '{value.name}' has no shape in the model; pass --input-shape {value.name}:DIMxDIM... or input data")
    if data_shape is not None and len(data_shape) != len(dims):
        data_shape = None  # the data does not fit this input: reading it says so, naming both shapes
    shape, defaulted, settled, flexible = [], [], [], []
    for index, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
            continue
        flexible.append(index)
        if data_shape is not None and data_shape[index] >= 0:
            shape.append(data_shape[index])
            settled.append(dim.dim_param or f"#{index}")
        elif dim.dim_param in named:  # another input's --input-shape or data sized this name
            shape.append(named[dim.dim_param])
        elif index == 0:
            shape.append(1)
            defaulted.append(dim.dim_param or "?")
        else:
            shape.append(_unresolved(value, index, dim))
    return InputSpec(value.name, _check_batch(value, tuple(shape)), dtype, onnx_type, tuple(defaulted), tuple(settled), tuple(flexible))


def _check_batch(value: onnx.ValueInfoProto, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A ModelError for a leading (batch) dim of 0: every output would be empty, and a comparison
    of empty outputs passes while comparing nothing. 0 elsewhere is data (a KV cache's empty past)."""
    if shape and shape[0] == 0:
        raise ModelError(f"input '{value.name}' would have shape {list(shape)}: a batch of 0 compares nothing; give dim 0 a size of 1 or more")
    return shape


def _unresolved(value: onnx.ValueInfoProto, index: int, dim) -> int:
    label = f"'{dim.dim_param}'" if dim.dim_param else f"#{index} (unknown)"
    example = "x".join(str(d.dim_value) if d.dim_value > 0 else "N" for d in value.type.tensor_type.shape.dim)
    raise ModelError(f"input '{value.name}' has dynamic dim {label}; pass --input-shape {value.name}:{example} with N set, or input data that fixes it")


def _check_override(value: onnx.ValueInfoProto, shape: tuple[int, ...]) -> tuple[int, ...]:
    problem = override_problem(value, shape)
    if problem:
        raise ModelError(f"--input-shape {problem}")
    return tuple(shape)


def override_problem(value: onnx.ValueInfoProto, shape: tuple[int, ...]) -> str | None:
    """Why `shape` cannot be input `value`'s shape (wrong rank, a dim the model fixes), or None."""
    dims = value.type.tensor_type.shape.dim
    if value.type.tensor_type.HasField("shape") and len(dims) != len(shape):
        return f"gives {len(shape)} dims for input '{value.name}', which has {len(dims)}"
    for index, (dim, size) in enumerate(zip(dims, shape)):
        if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:
            return f"sets dim {index} of input '{value.name}' to {size}, but the model fixes it at {dim.dim_value}"
    return None


def _numpy_dtype(elem_type: int) -> np.dtype | None:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return None


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """'images:1x3x224x224' -> ('images', (1, 3, 224, 224))."""
    name, sep, dims = text.rpartition(":")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    # 0 is a size: the empty past of a KV-cache decoder's first step is a [1, heads, 0, dim] input
    if not sep or not name or not shape or min(shape) < 0:
        raise ModelError(f"--input-shape '{text}' is malformed; write NAME:DIMxDIM..., e.g. images:1x3x224x224")
    return name, shape
