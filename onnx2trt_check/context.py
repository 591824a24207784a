"""Everything the checks of one model share, computed once and only when a check asks for it."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx

from . import original_inputs, protos, runtime
from .config import ToleranceConfig
from .data import Feed, FeedOptions, RawData, cap_note, default_range_notes, fit, for_model, model_feeds, read_source
from .feed_notes import value_range_note
from .fileio import save_model
from .gathered_rows import reference_model
from .input_conversions import conversion_notes
from .model import InputSpec, LoadedModel, graph_inputs, load_model, override_problem
from .output_layout import OutputLayout, output_layouts
from .references import ORT_REFERENCE, REFERENCE_KEY, ReferenceModel


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options of one run that shape how each model is checked."""

    feeds: FeedOptions = dataclasses.field(default_factory=FeedOptions)
    input_shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    tolerances: ToleranceConfig = dataclasses.field(default_factory=ToleranceConfig)
    targets: tuple[str, ...] | None = None
    # Where derived ONNX files (fp16/int8 artifacts, transformed models) are written: a fresh
    # folder per run, so nothing the user has is ever overwritten. Defaults to a temporary folder.
    artifact_dir: Path | None = None
    # Options of the check families (families.py), by option name.
    extra: Mapping[str, object] = dataclasses.field(default_factory=dict)
    # A run over several models: an --input-shape or --input-range name that one model has no input
    # of is ignored for it, with a note (in a run of one model it is a usage error).
    per_model_names: bool = False

    def for_model(self, model: Path) -> RunOptions:
        """These options as they apply to `model`: data sources written with {model} name its own
        file (data.for_model), in the feeds and in every family's option."""
        return dataclasses.replace(self, feeds=self.feeds.for_model(model), extra={key: for_model(value, model) for key, value in self.extra.items()})


class ModelContext:
    """One model under check. Loading and input validation happen in the constructor, so a bad
    model or bad input data is reported before any test runs; reference outputs are computed on
    first use and cached."""

    def __init__(self, path: Path, options: RunOptions):
        self.options = options = options.for_model(path)
        self.loaded: LoadedModel = load_model(path)
        self._notes: list[str] = [f"output '{name}' depends on no input: it is the same on every feed, so its checks measure the "
                                  "weights alone (an input a trace baked in as a constant?)" for name in protos.input_independent_outputs(self.loaded.proto)]
        names = {value.name for value in graph_inputs(self.loaded.proto)}
        shapes = self._shapes_for_this_model(self._for_this_model(options.input_shapes, names, "--input-shape"))
        ranges = self._for_this_model(options.feeds.ranges, names | {"*"}, "--input-range")
        source = options.extra.get(REFERENCE_KEY)
        matching = source.matching(self.loaded.proto) if isinstance(source, ReferenceModel) else None
        self.original_only = only = matching.original_only if matching is not None else ()
        raw, original_raw = original_inputs.split(options.feeds.read(), only)
        self._feed_options = dataclasses.replace(options.feeds, ranges=ranges, raw=raw)
        self.specs: list[InputSpec]
        self.feeds: list[Feed]
        self.specs, self.feeds = model_feeds(self.loaded.proto, self._feed_options, shapes)
        # Each feed's arrays of the inputs only --reference-model's original takes (original_inputs.py).
        self.original_only_feeds: list[Feed] = original_inputs.original_only_feeds(
            source.proto, only, original_raw, self.feeds, matching.inputs, options.feeds, source.label) if only else []
        self._artifacts: dict[str, Path] = {}
        self._folder: Path | None = None

    def own_data(self, raw: RawData) -> RawData:
        """`raw` without the arrays of the inputs only --reference-model's original takes: one file
        may serve both models, as --inputs does; calibration and fallback data feed this model alone
        (a student's calibration data holding its teacher's token_type_ids was refused)."""
        return original_inputs.split(raw, self.original_only)[0] if self.original_only else raw

    def read_feeds(self, source: str | Path, option: str = "--calibration-data") -> list[Feed]:
        """data.read_feeds for this model: a .npz or data-loader source's feeds of its own inputs."""
        return fit(self.own_data(read_source(source, option)), self.specs)

    def _for_this_model(self, values: Mapping[str, object], names: set[str], option: str) -> dict:
        """In a run over several models, the entries naming one of this model's inputs; the rest
        are ignored with a note."""
        if not self.options.per_model_names:
            return dict(values)
        for name in sorted(set(values) - names):
            self._notes.append(f"{option} '{name}' ignored: the model has no input '{name}'")
        return {name: value for name, value in values.items() if name in names}

    def _shapes_for_this_model(self, shapes: dict) -> dict:
        """In a run over several models, an --input-shape that does not fit this model's input
        (rank, a dim the model fixes) was meant for another model with that input name: ignored
        with a note."""
        if not self.options.per_model_names:
            return shapes
        values = {value.name: value for value in graph_inputs(self.loaded.proto)}
        fitting = {}
        for name, shape in shapes.items():
            problem = override_problem(values[name], shape)
            if problem:
                self._notes.append(f"--input-shape {name}:{'x'.join(map(str, shape))} ignored: it {problem}")
            else:
                fitting[name] = shape
        return fitting

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def notes(self) -> list[str]:
        """Facts the summary states about how the model was run."""
        raw = self._feed_options.raw
        notes = [f"inputs: {self.options.feeds.source}, {len(self.feeds)} feed(s){cap_note(raw)}"]
        for spec in self.specs:
            if spec.defaulted:
                notes.append(f"input '{spec.name}': dynamic batch dim '{spec.defaulted[0]}' set to {spec.shape[0]}")
            if spec.settled:
                notes.append(f"input '{spec.name}': dynamic dim(s) {', '.join(spec.settled)} set by the input data: shape {list(spec.shape)} "
                             "(the targets run no other size)")
        if self.loaded.inlined_calls:
            notes.append(f"{self.loaded.inlined_calls} call(s) of the model's local functions inlined, as TensorRT's parser does: "
                         "the transforms, the quantizer and bisect see the nodes inside them")
        notes += conversion_notes(raw, self.specs)
        notes += value_range_note(self.feeds)
        return notes + default_range_notes(self.specs, self.options.feeds) + self._notes + reference_notes(self)

    def artifact(self, name: str, build: Callable[[], onnx.ModelProto]) -> Path:
        """The derived model `name` (e.g. "fp16"), built once and saved as an ONNX file that
        ONNX Runtime and TensorRT load by path, like the deployed file."""
        if name not in self._artifacts:
            folder = self._artifact_folder()
            path = folder / f"{self.path.stem}.{name}.onnx"
            save_model(build(), path)
            self._artifacts[name] = path
        return self._artifacts[name]

    def made(self, name: str) -> Path | None:
        """The derived model `name` when it has been built already, else None (never builds it)."""
        return self._artifacts.get(name)

    def _artifact_folder(self) -> Path:
        if self._folder is None:
            parent = self.options.artifact_dir
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="onnx2trt_check-", dir=parent))
        return self._folder

    @functools.cached_property
    def output_layouts(self) -> dict[str, OutputLayout]:
        """How the graph makes each output (output_layout: a Concat's parts, a TopK's indices); the
        model's, so the same in every item and command."""
        return output_layouts(self.loaded.proto, self.feeds)

    @functools.cached_property
    def inferred(self) -> onnx.ModelProto:
        """The model after strict shape inference with data propagation, without its large weights
        (types and shapes only); raises onnx.shape_inference.InferenceError when inference fails.
        Shared by the checks that need types and shapes."""
        return onnx.shape_inference.infer_shapes(weightless(self.loaded.proto), strict_mode=True, data_prop=True)

    @functools.cached_property
    def reference(self) -> ReferenceRun:
        """What every target is compared with: `onnx_reference`, unless the run names another
        source (selected_reference)."""
        return selected_reference(self)

    @functools.cached_property
    def onnx_reference(self) -> ReferenceRun:
        """The model file itself in ONNX Runtime on the CPU, graph optimizations off."""
        started = time.perf_counter()
        session = runtime.create_session(self.path, optimized=False)
        outputs = runtime.run_feeds(session, self.feeds)
        return ReferenceRun(runtime.output_names(session), outputs, time.perf_counter() - started, model=self.loaded.proto)


@dataclasses.dataclass
class ReferenceRun:
    """ORT on the CPU, graph optimizations off: the graph as written (or, with a reference source,
    what `source` names)."""

    names: list[str]
    outputs: list[dict[str, np.ndarray]]
    seconds: float
    source: str = ORT_REFERENCE
    model: onnx.ModelProto | Path | None = None  # what ORT ran (optimizations off), where known: gathered_rows probes it

    def per_output(self, name: str) -> list[np.ndarray]:
        return [feed[name] for feed in self.outputs]


def selected_reference(ctx: ModelContext) -> ReferenceRun:
    """The run's reference: the source named by --reference-script / --reference-model
    (references.py), else the model itself (`ctx.onnx_reference`)."""
    source = ctx.options.extra.get(REFERENCE_KEY)
    if source is None:
        return ctx.onnx_reference
    started = time.perf_counter()
    names, outputs = source.run(ctx.loaded.proto, ctx.path, ctx.feeds, ctx.original_only_feeds)
    return ReferenceRun(names, outputs, time.perf_counter() - started, source.label, reference_model(source, ctx.loaded.proto))


def reference_notes(ctx: ModelContext) -> list[str]:
    source = ctx.options.extra.get(REFERENCE_KEY)
    return source.notes(ctx.loaded.proto) if source is not None else []


# Initializers up to this size stay: shape computations (Reshape targets, Slice bounds) read them.
_KEEP_BYTES = 1024


def weightless(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model whose large initializers are graph inputs of the same type and shape, so
    shape inference and type walks do not copy the weights (a 100 MB model stays a few kB)."""
    return protos.without_large_weights(proto, _KEEP_BYTES)[0]
