"""Build a serialized engine with the selected flavour's builder, without a GPU where it can.

TensorRT-RTX builds ahead of time on the CPU: by default for every GPU it runs on (compute
capability 8.0, 8.6, 8.9, 12.x). TensorRT 10/11 need a CUDA device to build. Precision comes from
the ONNX file (strongly typed network, see parse.py). The engine is kept only when asked for: the
build items need its size, not its bytes.

Dynamic inputs get one optimization profile from the feeds: per dimension the smallest and
largest size over the feeds (opt = the first feed's), and for a shape-tensor input (an int input
whose values are shapes, e.g. Reshape's `shape`) its values, which TensorRT must see at build time
(IOptimizationProfile.set_shape_input).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .flavour import Flavour
from .parse import NetworkInput, ParseResult, failed_on_cuda, fix_for, parse_network

# TensorRT-RTX's default targets (docs: "CPU-Only AOT and TensorRT-RTX Engines").
RTX_DEFAULT_TARGETS = "compute capability 8.0, 8.6, 8.9, 12.x (TensorRT-RTX's default AOT targets)"


class ProfileError(ValueError):
    """A dynamic input without data to size it; the message names the input and the fix."""


@dataclasses.dataclass(frozen=True)
class InputRange:
    """min/opt/max of one input for an optimization profile: shapes, or for a shape tensor its
    values. The engine builds here and the TensorRT targets' profiles (targets/trt.py) share it."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    shape_tensor: bool = False

    def __post_init__(self):
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ConfigError(f"input '{self.name}': min/opt/max shapes differ in rank; give all three the same rank")
        if not all(lo <= mid <= hi for lo, mid, hi in zip(self.min, self.opt, self.max)):
            raise ConfigError(f"input '{self.name}': shapes must satisfy min <= opt <= max per dimension")

    def text(self) -> str:
        kind = "values" if self.shape_tensor else "shape"
        same = self.min == self.max
        show = (lambda dims: "x".join(map(str, dims)) or "scalar") if not self.shape_tensor else (lambda v: str(list(v)))
        return f"{self.name} {kind} {show(self.opt)}" if same else f"{self.name} {kind} {show(self.min)}..{show(self.max)} (opt {show(self.opt)})"


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """One build: the parse verdict, and when it parsed, the build's seconds, engine size and errors."""

    parse: ParseResult
    built: bool = False
    seconds: float = 0.0
    engine_bytes: int = 0
    errors: tuple[str, ...] = ()
    profile: tuple[InputRange, ...] = ()
    targets: str = ""
    engine: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.parse.ok and self.built

    @property
    def needs_gpu(self) -> bool:
        """The parse or build failed on a CUDA call: this model needs a GPU to build, TensorRT gave
        no verdict here (parse.failed_on_cuda)."""
        return not self.ok and failed_on_cuda([*self.errors, *(issue.message for issue in self.parse.issues)])

    def figures(self) -> dict:
        flavour = self.parse.flavour
        return {
            "tensorrt": flavour.label,
            "parse_seconds": round(self.parse.seconds, 4),
            "build_seconds": round(self.seconds, 4),
            "engine_bytes": self.engine_bytes,
            "network_layers": self.parse.layers,
            "profile": [entry.text() for entry in self.profile],
            "targets": self.targets,
        }

    def failure(self) -> str:
        if not self.parse.ok:
            return self.parse.failure()
        fixes = sorted({fix for fix in map(fix_for, self.errors) if fix})
        lines = [f"{self.parse.flavour.label} builder fails:", *(f"  {error}" for error in self.errors)]
        return "\n".join(lines + [f"  fix: {fix}" for fix in fixes])


def input_ranges(inputs: Sequence[NetworkInput], feeds: Sequence[Mapping[str, np.ndarray]]) -> tuple[InputRange, ...]:
    """The optimization profile for the network's dynamic and shape-tensor inputs, from `feeds`
    (see the module docstring). Raises ProfileError for such an input that no feed gives."""
    ranges = []
    for entry in inputs:
        if not (entry.is_shape_tensor or -1 in entry.shape):
            continue
        arrays = [np.asarray(feed[entry.name]) for feed in feeds if entry.name in feed]
        if not arrays:
            what = "values" if entry.is_shape_tensor else "shape"
            raise ProfileError(f"input '{entry.name}' needs a {what} for the optimization profile; pass --inputs (or --input-shape) with it")
        rows = [tuple(int(v) for v in a.reshape(-1)) if entry.is_shape_tensor else tuple(a.shape) for a in arrays]
        low, high = np.min(rows, axis=0), np.max(rows, axis=0)
        ranges.append(InputRange(entry.name, tuple(map(int, low)), rows[0], tuple(map(int, high)), entry.is_shape_tensor))
    return tuple(ranges)


def build_engine(
    path: str | os.PathLike,
    flavour: Flavour,
    *,
    feeds: Sequence[Mapping[str, np.ndarray]] = (),
    keep_engine: bool = False,
) -> BuildResult:
    """Parse and build `path` with `flavour`. `feeds` size the dynamic and shape-tensor inputs.
    Defaults to none (a model with such inputs then fails with the ProfileError's text).
    `keep_engine` returns the serialized engine's bytes. Defaults to False."""
    parsed = parse_network(path, flavour)
    if not parsed.result.ok:
        return BuildResult(parsed.result)
    try:
        profile = input_ranges(parsed.result.inputs, feeds)
    except ProfileError as error:
        return BuildResult(parsed.result, errors=(str(error),))
    config = _config(parsed, profile)
    started = time.perf_counter()
    try:
        engine = parsed.builder.build_serialized_network(parsed.network, config)
    except Exception as error:  # the bindings raise for some API errors instead of returning None
        parsed.logger.errors.append(f"{type(error).__name__}: {error}")
        engine = None
    seconds = time.perf_counter() - started
    targets = RTX_DEFAULT_TARGETS if flavour.is_rtx else "the local GPU"
    if engine is None or engine.nbytes == 0:
        errors = tuple(parsed.logger.errors) or ("build_serialized_network returned no engine and logged no error",)
        return BuildResult(parsed.result, False, seconds, errors=errors, profile=profile, targets=targets)
    data = bytes(engine) if keep_engine else None
    return BuildResult(parsed.result, True, seconds, int(engine.nbytes), profile=profile, targets=targets, engine=data)


def _config(parsed, profile: Sequence[InputRange]):
    config = parsed.builder.create_builder_config()
    if profile:
        trt_profile = parsed.builder.create_optimization_profile()
        for entry in profile:
            setter = trt_profile.set_shape_input if entry.shape_tensor else trt_profile.set_shape
            setter(entry.name, entry.min, entry.opt, entry.max)
        config.add_optimization_profile(trt_profile)
    return config
