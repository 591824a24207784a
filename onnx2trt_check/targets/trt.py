"""The TensorRT target: a thin layer over Polygraphy's public loaders and TrtRunner.

    NetworkFromOnnxPath(path, strongly_typed=...)
      -> CreateConfig(fp16=, int8=, tf32=, memory_pool_limits=, profiles=, load_timing_cache=, calibrator=)
      -> EngineFromNetwork(..., save_timing_cache=)  [-> SaveEngine(engine cache)]
    or, on an engine-cache hit, EngineFromBytes(BytesFromPath(cached engine)).

Two precision paths (docs/research/tensorrt.md): a strongly typed network takes its precision from
the ONNX artifact (fp16 tensors, Q/DQ nodes) and is the only path on TensorRT >= 11, which removed
the builder's precision flags and calibrators; on TensorRT 10 the fp16/int8 builder flags may be
used, and int8 on a model without Q/DQ is calibrated by Polygraphy's Calibrator.

The flavour (TensorRT 10/11 or TensorRT-RTX, trt/flavour.py) is part of the options: Polygraphy's
TensorRT backend is imported on first use, bound to that flavour's module (flavour.polygraphy_backend),
and TensorRT-RTX builds for the local GPU (Polygraphy's CreateConfigRTX(use_gpu=True)). Constructing
the loaders does not import tensorrt; only calling them does, so this module imports on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.fileio import atomic_write_bytes
from onnx2trt_check.protos import read_onnx
from onnx2trt_check.trt import devices, flavour
from onnx2trt_check.trt.build import InputRange

# Polygraphy names this module uses, resolved on first use from the flavour's backend (a module
# attribute set by a test wins, which is how the tests stand in for TensorRT's runner).
_POLYGRAPHY_NAMES = ("Calibrator", "CreateConfig", "EngineFromBytes", "EngineFromNetwork", "ModifyNetworkOutputs",
                     "NetworkFromOnnxPath", "Profile", "SaveEngine", "TrtRunner")


def _pg(name: str, flavour_key: str = "tensorrt"):
    """Polygraphy's `name` for the flavour: patched module attribute first, else its TensorRT backend."""
    if name in globals():
        return globals()[name]
    return getattr(flavour.polygraphy_backend(flavour_key), name)


def __getattr__(name: str):
    if name in _POLYGRAPHY_NAMES:
        return _pg(name, flavour.requested() if flavour.requested() != "auto" else "tensorrt")
    raise AttributeError(name)


PRECISIONS = ("fp32", "fp16", "int8", "best")
INSTALL_HINT = flavour.INSTALL_HINT
# The path name that goes into reports; never a TensorRT number, only how the engine was asked for.
STRONGLY_TYPED_PATH = "strongly typed network: precision comes from the ONNX artifact (fp16 tensors / Q/DQ nodes)"
FLAG_PATH = "TensorRT 10 builder flags on a weakly typed network"


def cuda_devices() -> tuple[list[str], str]:
    """Names of the visible CUDA devices and how they were found or why none was (trt/devices.py)."""
    found, how = devices.cuda_devices()
    return [device.name for device in found], how


def installed_flavour(choice: str | None = None) -> flavour.Flavour:
    """The TensorRT flavour to build with (trt/flavour.py); raises flavour.TrtUnavailable."""
    return flavour.select(choice)


def installed_trt_version(choice: str | None = None) -> str:
    """The selected flavour's label, e.g. "TensorRT 10.13.0.35" or "TensorRT-RTX 1.7.1.116"."""
    return installed_flavour(choice).label


def trt_unavailable_reason(choice: str | None = None) -> str | None:
    """None when a TensorRT flavour is installed and the first visible GPU runs its engines;
    otherwise why not, exactly (no TensorRT, no GPU, or a GPU the flavour does not run on)."""
    try:
        selected = flavour.select(choice)
    except flavour.TrtUnavailable as error:
        return str(error)
    return devices.inference_unavailable_reason(selected)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrtBuildOptions:
    """How to build the engine.

    `precision` is one of "fp32", "fp16", "int8", "best". Defaults to "fp32". With `strongly_typed`
    it names the ONNX artifact's precision and sets no builder flag. Defaults to False.
    `tf32` allows TF32 in fp32 layers. Defaults to False.
    `workspace_bytes` caps the builder workspace pool. Defaults to None (TensorRT's default).
    `profile` gives min/opt/max shapes per dynamic input. Defaults to none.
    `timing_cache` is a file the build loads tactics from and saves them to. Defaults to None.
    `calibration_id` names the calibration data (e.g. its sha256); it keys cached calibrated
    engines, which are not cached without it. Defaults to None.
    `trt_major` is the TensorRT major version the build targets; >= 11 allows only the strongly
    typed path. Defaults to 10. `flavour` is "tensorrt" or "tensorrt-rtx" (strongly typed only,
    whatever `trt_major`; its own major is never read as a TensorRT version). Defaults to "tensorrt".
    """

    precision: str = "fp32"
    strongly_typed: bool = False
    tf32: bool = False
    workspace_bytes: int | None = None
    profile: tuple[InputRange, ...] = ()
    timing_cache: str | None = None
    calibration_id: str | None = None
    trt_major: int = 10
    flavour: str = "tensorrt"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.strongly_typed_only and self.precision != "fp32" and not self.strongly_typed:
            raise ConfigError(
                f"{self.product} has no {self.precision} builder flag or calibrator; "
                "build the fp16/QDQ ONNX artifact and use strongly_typed=True"
            )

    @property
    def is_rtx(self) -> bool:
        return self.flavour == "tensorrt-rtx"

    @property
    def product(self) -> str:
        """"TensorRT-RTX" or "TensorRT <major>", for messages."""
        return "TensorRT-RTX" if self.is_rtx else f"TensorRT {self.trt_major}"

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT >= 11 and TensorRT-RTX have no precision flags and no calibrators."""
        return self.is_rtx or self.trt_major >= 11

    @property
    def uses_builder_flags(self) -> bool:
        return not self.strongly_typed and not self.strongly_typed_only

    @property
    def fp16_flag(self) -> bool:
        return self.uses_builder_flags and self.precision in ("fp16", "best")

    @property
    def int8_flag(self) -> bool:
        return self.uses_builder_flags and self.precision in ("int8", "best")

    @property
    def network_strongly_typed(self) -> bool:
        """TensorRT 11 and TensorRT-RTX networks are always strongly typed, whatever was asked."""
        return self.strongly_typed or self.strongly_typed_only


ShapeRange = tuple[Sequence[int], Sequence[int], Sequence[int]]


def profile_from_shapes(shapes: Mapping[str, ShapeRange]) -> tuple[InputRange, ...]:
    """`{"images": (min, opt, max)}` -> the `profile` option."""
    return tuple(InputRange(name, tuple(lo), tuple(mid), tuple(hi)) for name, (lo, mid, hi) in shapes.items())


def engine_cache_key(model_sha256: str, options: TrtBuildOptions, trt_version: str, targets: str) -> str:
    """sha256 over everything the engine depends on: the model, the options, the flavour and its
    version (`trt_version` is the flavour's label, "TensorRT-RTX 1.7.1.116"), and the compute
    capabilities the engine targets (`targets`: an engine built on a CPU has no GPU name). The
    timing-cache path is left out: it only speeds up tactic selection."""
    build = dataclasses.asdict(options)
    build.pop("timing_cache")
    payload = {"model": model_sha256, "build": build, "tensorrt": trt_version, "targets": targets}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class EngineCache:
    """A directory of serialized engines named by `engine_cache_key`. The key hashes the .onnx
    file's bytes only: weights in external data files are not part of it."""

    directory: str
    trt_version: str
    targets: str

    def path_for(self, model_path: str | os.PathLike, options: TrtBuildOptions) -> str:
        key = engine_cache_key(file_sha256(model_path), options, self.trt_version, self.targets)
        return os.path.join(self.directory, f"{key}.engine")


class _PoolLimits(dict):
    """`{"WORKSPACE": bytes}`. Polygraphy wants trt.MemoryPoolType keys, and building those
    imports tensorrt; this dict hands them over only when CreateConfig iterates it at build time,
    so the loader chain itself stays constructible (and testable) without TensorRT."""

    def __init__(self, flavour_key: str = "tensorrt", **limits):
        super().__init__(**limits)
        self.flavour_key = flavour_key

    def items(self):
        trt = flavour.probe(self.flavour_key).module()  # only reached inside a TensorRT build
        return [(getattr(trt.MemoryPoolType, name), size) for name, size in super().items()]


def has_qdq_nodes(model_path: str | os.PathLike) -> bool:
    """Whether the model carries explicit quantization (QuantizeLinear/DequantizeLinear)."""
    model = ir.from_proto(read_onnx(model_path))
    nodes = ir.traversal.RecursiveGraphIterator(model.graph)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in nodes)


def needs_calibrator(model_path: str | os.PathLike, options: TrtBuildOptions) -> bool:
    """TensorRT 10 implicit int8: the int8 flag on a model without Q/DQ nodes."""
    return options.int8_flag and not has_qdq_nodes(model_path)


def build_config(options: TrtBuildOptions, *, calibrator=None):
    """The CreateConfig loader for `options`; precision flags only on the TensorRT 10 flag path."""
    profiles = [_polygraphy_profile(options.profile, options.flavour)] if options.profile else None
    pool_limits = _PoolLimits(options.flavour, WORKSPACE=options.workspace_bytes) if options.workspace_bytes else None
    if options.is_rtx:  # TensorRT-RTX: no precision flags, no calibrator; build for this GPU
        flavour.polygraphy_backend("tensorrt-rtx")  # binds Polygraphy to tensorrt_rtx before its RTX config loads
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX  # noqa: PLC0415

        return CreateConfigRTX(use_gpu=True, tf32=options.tf32, memory_pool_limits=pool_limits, profiles=profiles, load_timing_cache=options.timing_cache)
    return _pg("CreateConfig", options.flavour)(
        fp16=options.fp16_flag,
        int8=options.int8_flag,
        tf32=options.tf32,
        memory_pool_limits=pool_limits,
        profiles=profiles,
        load_timing_cache=options.timing_cache,
        calibrator=calibrator,
    )


def _polygraphy_profile(profile: Iterable[InputRange], flavour_key: str = "tensorrt"):
    polygraphy_profile = _pg("Profile", flavour_key)()
    for entry in profile:
        polygraphy_profile.add(entry.name, min=entry.min, opt=entry.opt, max=entry.max)
    return polygraphy_profile


def build_loader_chain(
    model_path: str | os.PathLike,
    options: TrtBuildOptions,
    *,
    data_loader: Iterable[Mapping[str, np.ndarray]] | None = None,
    engine_cache: EngineCache | None = None,
    mark_all: bool = False,
):
    """The Polygraphy loader that yields the engine: from the cache when it holds one, else built
    (and saved to the cache). `data_loader` feeds the int8 calibrator where one is needed.
    `mark_all` marks every tensor as an output (Polygraphy's ModifyNetworkOutputs, as
    `polygraphy run --trt-outputs mark all` does) for layerwise comparison; such an engine is a
    different engine, so it never goes through the cache. Defaults to False."""
    model_path = os.fspath(model_path)
    calibrator = _calibrator_for(model_path, options, data_loader)
    cached = None if mark_all else _cached_engine_path(model_path, options, engine_cache, calibrated=calibrator is not None)
    key = options.flavour
    # Polygraphy is imported here, not with the module: a run whose items build no Polygraphy
    # chain (no GPU, or --target ort) does not pay for it at startup (issue 18).
    from polygraphy import constants  # noqa: PLC0415
    from polygraphy.backend.common import BytesFromPath  # noqa: PLC0415

    if cached is not None and os.path.exists(cached):
        return _pg("EngineFromBytes", key)(BytesFromPath(cached))
    network = _pg("NetworkFromOnnxPath", key)(model_path, strongly_typed=options.network_strongly_typed)
    if mark_all:
        network = _pg("ModifyNetworkOutputs", key)(network, outputs=constants.MARK_ALL)
    config = build_config(options, calibrator=calibrator)
    engine = _pg("EngineFromNetwork", key)(network, config=config, save_timing_cache=options.timing_cache)
    return engine if cached is None else _atomic_save_engine(_pg("SaveEngine", key))(engine, path=cached)


@functools.cache
def _atomic_save_engine(save_engine: type) -> type:
    """Polygraphy's SaveEngine (of the flavour), writing the engine atomically (fileio): it writes
    the cache file in place, so a build stopped or failing mid-write left a truncated engine, and
    the next run took the file for a cache hit."""

    class AtomicSaveEngine(save_engine):
        def call_impl(self):
            from polygraphy import util  # noqa: PLC0415

            engine, _ = util.invoke_if_callable(self._engine)
            atomic_write_bytes(self.path, engine.serialize())
            return engine

    return AtomicSaveEngine


def _calibrator_for(model_path: str, options: TrtBuildOptions, data_loader):
    if not needs_calibrator(model_path, options):
        return None
    if data_loader is None:
        raise ConfigError(
            f"trt-{options.precision} on TensorRT 10 flags needs calibration data for a model without "
            "Q/DQ nodes; pass data_loader=... or build the QDQ artifact and use strongly_typed=True"
        )
    return _pg("Calibrator", options.flavour)(data_loader)


def _cached_engine_path(model_path: str, options: TrtBuildOptions, engine_cache, *, calibrated: bool) -> str | None:
    # A calibrated engine depends on its calibration data: without a name for that data, no cache.
    if engine_cache is None or (calibrated and options.calibration_id is None):
        return None
    return engine_cache.path_for(model_path, options)


def describe_path(options: TrtBuildOptions, *, calibrated: bool = False) -> str:
    """One line for the report: which precision path the build takes."""
    if not options.uses_builder_flags:
        return f"trt-{options.precision}: {STRONGLY_TYPED_PATH}; tf32={options.tf32}"
    flags = f"fp16={options.fp16_flag} int8={options.int8_flag} tf32={options.tf32}"
    int8_source = "; int8 scales from Polygraphy's Calibrator" if calibrated else ""
    return f"trt-{options.precision}: {FLAG_PATH} ({flags}){int8_source}"


def installed_trt_major(choice: str | None = None) -> int:
    """The selected flavour's major version, for `TrtBuildOptions(trt_major=...)`."""
    return installed_flavour(choice).major


def check_installed_major(options: TrtBuildOptions) -> None:
    """The options must target the selected flavour and its major: the precision path depends on them."""
    installed = installed_flavour(options.flavour)
    if installed.key != options.flavour or installed.major != options.trt_major:
        raise ConfigError(
            f"options target {options.product} but {installed.label} is installed; "
            f"pass flavour={installed.key!r}, trt_major={installed.major}"
        )


class TrtTarget:
    """Runs a model through a TensorRT engine built as `options` say (see TrtBuildOptions)."""

    def __init__(
        self,
        options: TrtBuildOptions,
        *,
        data_loader: Iterable[Mapping[str, np.ndarray]] | None = None,
        engine_cache_dir: str | os.PathLike | None = None,
    ):
        self.options = options
        self.data_loader = data_loader
        self.engine_cache_dir = None if engine_cache_dir is None else os.fspath(engine_cache_dir)

    @property
    def name(self) -> str:
        return f"trt-{self.options.precision}"

    def unavailable_reason(self) -> str | None:
        return trt_unavailable_reason(self.options.flavour)

    def describe(self, model_path: str | os.PathLike | None = None) -> str:
        """The path taken; with `model_path`, also whether int8 is calibrated (no Q/DQ nodes)."""
        calibrated = model_path is not None and needs_calibrator(model_path, self.options)
        return describe_path(self.options, calibrated=calibrated)

    def run(
        self, model_path: str | os.PathLike, feeds: Iterable[Mapping[str, np.ndarray]]
    ) -> list[dict[str, np.ndarray]]:
        """Build (or load) the engine and run every feed; one dict of named outputs per feed."""
        check_installed_major(self.options)
        loader = build_loader_chain(
            model_path, self.options, data_loader=self.data_loader, engine_cache=self._engine_cache()
        )
        with _pg("TrtRunner", self.options.flavour)(loader) as runner:
            # Runners may reuse their output buffers between calls, so every output is copied.
            return [_copied(runner.infer(dict(feed))) for feed in feeds]

    def run_exposed(self, model_path: str | os.PathLike, feeds: Iterable[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Every feed through an engine with every tensor marked as an output (for bisection); one
        dict of tensor name -> array per feed. Tensors that TensorRT fused away are absent."""
        check_installed_major(self.options)
        loader = build_loader_chain(model_path, self.options, data_loader=self.data_loader, mark_all=True)
        with _pg("TrtRunner", self.options.flavour)(loader) as runner:
            return [_copied(runner.infer(dict(feed))) for feed in feeds]

    def timed_runner(self, model_path: str | os.PathLike, feed: Mapping[str, np.ndarray]):
        """A no-argument call running `feed` once on an engine built and activated beforehand, for
        latency. TrtRunner.infer copies the outputs to the host, which synchronizes the stream, so
        each call is a complete inference. The runner is deactivated when the call is dropped.
        (Polygraphy's TrtRunner has no CUDA-graph option; none is offered here.)"""
        check_installed_major(self.options)
        loader = build_loader_chain(model_path, self.options, data_loader=self.data_loader, engine_cache=self._engine_cache())
        runner = _pg("TrtRunner", self.options.flavour)(loader)
        runner.activate()
        call = functools.partial(runner.infer, dict(feed))
        weakref.finalize(call, runner.deactivate)
        return call

    def _engine_cache(self) -> EngineCache | None:
        if self.engine_cache_dir is None:
            return None
        os.makedirs(self.engine_cache_dir, exist_ok=True)
        return EngineCache(self.engine_cache_dir, installed_trt_version(self.options.flavour), engine_targets(self.options))


def engine_targets(options: TrtBuildOptions) -> str:
    """What the engine is built for, for the cache key: the local GPU's name and compute capability
    (TensorRT-RTX builds for it: use_gpu=True), or "no GPU" where none is visible."""
    found, _how = devices.cuda_devices()
    return f"{found[0].name} sm{found[0].sm}" if found else "no GPU"


def _copied(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.array(value, copy=True) for name, value in outputs.items()}
