"""Load, validate and fingerprint a model, and resolve its input specs.

Every problem with the file itself becomes a one-line `ModelError` that names the fix. The model
file is only ever opened for reading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import google.protobuf.message
import numpy as np
import onnx
from onnx import helper

from .errors import ModelError

_HASH_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A graph input with every dim resolved to an int.

    `defaulted` names the dims that were symbolic and set by the leading-batch rule (the summary
    reports them); `dtype` is a numpy dtype, or None when numpy has no equivalent."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | None
    onnx_type: str
    defaulted: tuple[str, ...] = ()


@dataclasses.dataclass
class LoadedModel:
    path: Path
    proto: onnx.ModelProto
    sha256: str

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Read a model with its external data; raise ModelError for anything that is not a usable ONNX
    model."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist; check the --model path")
    if path.is_dir():
        raise ModelError(f"'{path}' is a folder; pass the folder to --model to check every .onnx in it")
    path = path.resolve()  # a symlinked model is read where it lies: its external data is there, and onnx refuses linked data
    proto = _parse(path)
    _load_external_data(proto, path)
    return LoadedModel(path=path, proto=proto, sha256=sha256_of(path))


def _parse(path: Path) -> onnx.ModelProto:
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (google.protobuf.message.DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelError(
            f"'{path}' is not a valid ONNX model ({_first_line(exc)}); the file may be truncated or "
            "not ONNX: re-export it"
        ) from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"'{path}' parsed as an empty ONNX model (no nodes, no outputs); it is not ONNX or is truncated: re-export it")
    return proto


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    base = path.parent
    for tensor in _external_tensors(proto):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not (base / location).is_file():
            raise ModelError(
                f"initializer '{tensor.name}' of '{path}' keeps its data in '{location}', which is missing next to "
                "the model; copy the external data file beside it"
            )
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(base))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:  # ValidationError: a linked or escaping data path
        raise ModelError(f"external data of '{path}' cannot be read ({_first_line(exc)}); re-export the model") from None


def _external_tensors(proto: onnx.ModelProto):
    return [t for t in onnx.external_data_helper._get_all_tensors(proto) if onnx.external_data_helper.uses_external_data(t)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old exporters list weights as inputs)."""
    initializers = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def resolve_input_specs(proto: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None = None) -> list[InputSpec]:
    """Input specs with static shapes. A symbolic or unknown leading dim defaults to 1 (the batch);
    any other symbolic dim needs an override (`--input-shape name:1x3x224x224`)."""
    overrides = dict(overrides or {})
    specs = [_resolve_one(value, overrides.pop(value.name, None)) for value in graph_inputs(proto)]
    if overrides:
        names = ", ".join(s.name for s in specs) or "none"
        raise ModelError(f"--input-shape names '{next(iter(overrides))}', which is not an input of the model (inputs: {names})")
    return specs


def _resolve_one(value: onnx.ValueInfoProto, override: tuple[int, ...] | None) -> InputSpec:
    tensor_type = value.type.tensor_type
    elem = tensor_type.elem_type
    onnx_type = onnx.TensorProto.DataType.Name(elem)
    dtype = _numpy_dtype(elem)
    if override is not None:
        return InputSpec(value.name, _check_override(value, override), dtype, onnx_type)
    if not tensor_type.HasField("shape"):
        raise ModelError(f"input '{value.name}' has no shape in the model; pass --input-shape {value.name}:DIMxDIM...")
    shape, defaulted = [], []
    for index, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif index == 0:
            shape.append(1)
            defaulted.append(dim.dim_param or "?")
        else:
            shape.append(_unresolved(value, index, dim))
    return InputSpec(value.name, tuple(shape), dtype, onnx_type, tuple(defaulted))


def _unresolved(value: onnx.ValueInfoProto, index: int, dim) -> int:
    label = f"'{dim.dim_param}'" if dim.dim_param else f"#{index} (unknown)"
    example = "x".join(str(d.dim_value) if d.dim_value > 0 else "N" for d in value.type.tensor_type.shape.dim)
    raise ModelError(f"input '{value.name}' has dynamic dim {label}; pass --input-shape {value.name}:{example} with N set")


def _check_override(value: onnx.ValueInfoProto, shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = value.type.tensor_type.shape.dim
    if value.type.tensor_type.HasField("shape") and len(dims) != len(shape):
        raise ModelError(f"--input-shape gives {len(shape)} dims for input '{value.name}', which has {len(dims)}")
    for index, (dim, size) in enumerate(zip(dims, shape)):
        if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:
            raise ModelError(f"--input-shape sets dim {index} of input '{value.name}' to {size}, but the model fixes it at {dim.dim_value}")
    return tuple(shape)


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
    if not sep or not name or not shape or min(shape) <= 0:
        raise ModelError(f"--input-shape '{text}' is malformed; write NAME:DIMxDIM..., e.g. images:1x3x224x224")
    return name, shape
