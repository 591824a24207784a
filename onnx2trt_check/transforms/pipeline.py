"""Apply the registered transforms in order, verifying every step that changed the model.

Each modifying step must pass onnx.checker and its verifier (value equivalence in ONNX Runtime on
the given feeds; decision agreement for remove_output_sigmoid). The pipeline stops at the first
step that fails and names it; its result model is the last one that passed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from onnx2trt_check import protos
from onnx2trt_check.errors import CheckError, ConfigError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport
from onnx2trt_check.transforms.registry import (
    TRANSFORMS,
    RegisteredTransform,
    get_transform,
)
from onnx2trt_check.transforms.verify import Verification, as_feed_list, run_batched, verify_values


@dataclasses.dataclass
class PipelineStep:
    name: str
    modified: bool
    passed: bool
    nodes_before: int
    nodes_after: int
    report: TransformReport | None = None
    verification: Verification | None = None
    error: str = ""  # why a step failed before it could be verified (an exception, the checker)
    bodies: bool = False  # the model has If/Loop/Scan bodies, which our own transforms leave as they are

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: FAILED, {self.error}"
        if not self.modified:
            return f"{self.name}: no change"
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.name}: {verdict}, {self.nodes_before} -> {self.nodes_after} nodes; {self.verification.summary}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class PipelineResult:
    """The model after the last step that passed, and every step taken.

    `model` is the caller's to edit: when it is a proto someone else holds (`shared`: the caller's
    input when no step changed it, a result a PipelineMemo keeps), it is a copy, made on first
    access (most callers only read the steps, and a copy of a 100 MB model costs 0.05 s)."""

    def __init__(self, model: onnx.ModelProto, steps: list[PipelineStep], failed_step: str | None = None, *,
                 shared: Sequence[onnx.ModelProto] = ()) -> None:
        self._model, self._shared = model, tuple(shared)
        self.steps, self.failed_step = steps, failed_step

    @property
    def model(self) -> onnx.ModelProto:
        if any(self._model is other for other in self._shared):
            self._model, self._shared = gu.copy_model(self._model), ()
        return self._model

    @property
    def nodes_after(self) -> int:
        """Nodes of `model`, counted without making the copy."""
        return len(self._model.graph.node)

    @property
    def passed(self) -> bool:
        return self.failed_step is None

    def summary(self) -> str:
        head = "pipeline passed" if self.passed else f"pipeline stopped at '{self.failed_step}'"
        return "\n".join([head, *(f"  {step.summary()}" for step in self.steps)])


def run_pipeline(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    *,
    passes: Sequence[str | RegisteredTransform] | None = None,
    options: Mapping[str, Mapping[str, object]] | None = None,
    memo: PipelineMemo | None = None,
) -> PipelineResult:
    """Apply `passes` in the order given (names from the registry, or `RegisteredTransform`
    entries) to `model`, verifying each modifying step on `feeds`. Defaults to every registered
    transform in registry order. `options` maps a transform name to keyword options that update
    its defaults. `memo` shares runs and steps with other pipelines over the same model and feeds
    (PipelineMemo). Defaults to none: this call's own.
    """
    entries = _resolve(passes)
    options = _checked_options(options, entries)
    feeds = as_feed_list(feeds)
    run = memo if memo is not None and memo.serves(feeds) else PipelineMemo(model, feeds)
    model = run.model if run.source is model else model
    try:
        return _run_steps(model, feeds, entries, options, run)
    finally:
        run.forget_unkept()


def _run_steps(model, feeds, entries, options, run: PipelineMemo) -> PipelineResult:
    current, steps = model, []
    for entry in entries:
        kwargs = {**entry.defaults, **options.get(entry.name, {})}
        step, candidate = run.known_step(entry, current, kwargs) or _run_step(entry, current, feeds, kwargs, run)
        run.keep_step(entry, current, kwargs, step, candidate)
        steps.append(step)
        if not step.passed:
            return PipelineResult(current, steps, entry.name, shared=run.held(model))
        current = candidate
    return PipelineResult(current, steps, shared=run.held(model))


# Weights above this size are set aside while onnx.checker runs (see check_structure).
_CHECKER_WEIGHT_BYTES = 64 * 1024


def check_structure(model: onnx.ModelProto) -> None:
    """onnx.checker.check_model, with the large weights set aside (typed graph inputs in their
    place): the checker serializes the whole model, 0.15 s of a 100 MB one per step. The one thing
    it checks of a weight's values, that raw_data is as long as shape and type need, is checked
    here for the weights set aside. Raises onnx.checker.ValidationError."""
    light, weights = protos.without_large_weights(model, _CHECKER_WEIGHT_BYTES)
    onnx.checker.check_model(light)
    for tensor in weights.values():
        held, needed = len(tensor.raw_data), protos.raw_data_bytes(tensor)
        if held != needed:
            raise onnx.checker.ValidationError(f"initializer '{tensor.name}' holds {held} bytes of raw_data, its shape and type need {needed}")


def _resolve(passes) -> list[RegisteredTransform]:
    if passes is None:
        return list(TRANSFORMS)
    if isinstance(passes, str):
        raise ConfigError(f"passes={passes!r} is one string; pass a list of transform names")
    return [get_transform(p) if isinstance(p, str) else RegisteredTransform(*p) for p in passes]


def _checked_options(options, entries) -> dict:
    options = dict(options or {})
    names = [entry.name for entry in entries]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"options for {unknown}, which are not in the pipeline; pipeline steps: {', '.join(names)}")
    return options


class PipelineMemo:
    """What pipelines over one model on one list of feeds share, so nothing is computed twice:
    `pytest --model` applies each transform alone (one item each) and then all of them (the pipeline
    item), on the same model and feeds.

    * Runs: a model run on the feeds is remembered, so a step's result, which is the next step's
      `before`, runs once, not twice (an ONNX Runtime session per run is most of a verified step's
      time). The model itself is run by `reference` when given: a function that returns its
      outputs as run_model would (the ORT reference run every target is compared with), so the
      original is not run again for its transforms. Should `reference` raise, the model is run here
      and the verification reports what ONNX Runtime says.
    * Steps: a transform applied to the model itself, with the same options, is taken once: the
      pipeline's steps up to and including its first modifying one are the single-transform runs'
      steps. Of the modifying ones only the first result is kept (one model's worth of memory):
      the pipeline can use no other.

    * Batches: a transformed graph of a model whose inputs declare a free first dimension runs
      the feeds stacked, in one run, its outputs split back per feed (verify.run_batched; the
      model's own outputs stay per feed). A verification that fails on such outputs is taken
      again on per-feed runs (`per_feed`) before it is given: a batch never makes a failure.

    Models and feeds are matched by identity, not equality: comparing protos would cost as much as
    a small run. Outputs of other models are kept for one pipeline call (forget_unkept).
    """

    def __init__(self, model: onnx.ModelProto, feeds, *, reference: Callable[[], list] | None = None) -> None:
        # `source` is the model as given; `model` its deployable form (protos.in_deployable_form), which
        # the transforms take: onnxsim refuses a graph with unsorted nodes
        self.source, self.model, self._feeds = model, protos.in_deployable_form(model), list(feeds)
        self._reference = reference
        self._outputs: list[tuple[onnx.ModelProto, list, bool]] = []  # (model, outputs, batched), the newest last
        self._steps: dict[tuple, tuple[PipelineStep, onnx.ModelProto]] = {}

    def serves(self, feeds) -> bool:
        """Whether `feeds` are this memo's feeds (the same dicts, in the same order)."""
        return len(feeds) == len(self._feeds) and all(a is b for a, b in zip(feeds, self._feeds))

    def __call__(self, model: onnx.ModelProto, feeds) -> list:
        """run_model(model, feeds), remembered (the `run` of every verifier); batched where it may be."""
        return self._run(model, feeds, batch=True)

    def per_feed(self, model: onnx.ModelProto, feeds) -> list:
        """As calling the memo, with outputs from runs of one feed each: a batched run's are replaced."""
        return self._run(model, feeds, batch=False)

    def holds_batched(self) -> bool:
        """Whether outputs from a batched run are remembered (a failed verification may owe them)."""
        return any(batched for _, _, batched in self._outputs)

    def _run(self, model, feeds, *, batch: bool) -> list:
        if not self.serves(feeds):
            return run_model(model, feeds)  # other feeds (a verifier that maps them): nothing to reuse
        for index, (known, outputs, batched) in enumerate(self._outputs):
            if known is model and (batch or not batched):
                return outputs
            if known is model:
                del self._outputs[index]
                break
        outputs = self._reference_outputs() if model is self.model else None
        if outputs is None and batch and model is not self.model:
            outputs = run_batched(model, feeds, self(self.model, feeds), run=run_model)
            if outputs is not None:
                self._outputs.append((model, outputs, True))
                return outputs
        outputs = run_model(model, feeds) if outputs is None else outputs
        self._outputs.append((model, outputs, False))
        return outputs

    def _reference_outputs(self) -> list | None:
        if self._reference is None:
            return None
        try:
            return self._reference()
        except Exception:  # noqa: BLE001 - run here instead: the step's verification reports the error
            self._reference = None
            return None

    def known_step(self, entry: RegisteredTransform, model, kwargs) -> tuple[PipelineStep, onnx.ModelProto] | None:
        """The step `entry` with `kwargs` already took from this memo's model, if `model` is it."""
        return self._steps.get(_step_key(entry, kwargs)) if model is self.model else None

    def keep_step(self, entry: RegisteredTransform, model, kwargs, step: PipelineStep, candidate: onnx.ModelProto) -> None:
        """Remember a step taken from this memo's model (a modifying one only if it is the first)."""
        if model is not self.model:
            return
        if candidate is not model and any(kept is not self.model for _, kept in self._steps.values()):
            return
        self._steps[_step_key(entry, kwargs)] = (step, candidate)

    def held(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, ...]:
        """`model` and the results this memo keeps: protos a PipelineResult must not hand out."""
        return (model, *(candidate for _, candidate in self._steps.values()))

    def forget_unkept(self) -> None:
        """Drop the outputs of models other than this memo's and the kept step results."""
        kept = [self.model] + [candidate for _, candidate in self._steps.values()]
        self._outputs = [entry for entry in self._outputs if any(entry[0] is k for k in kept)]


def _step_key(entry: RegisteredTransform, kwargs) -> tuple:
    return entry.name, entry.function, entry.verifier, _frozen(kwargs)


def _frozen(value):
    """A hashable stand-in for option values: containers by content, arrays and other unhashable
    objects by identity (the feeds a memo holds stay alive, so their ids stay theirs)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def _run_step(entry: RegisteredTransform, model, feeds, kwargs, run) -> tuple[PipelineStep, onnx.ModelProto]:
    nodes_before = len(model.graph.node)
    try:
        result = entry.function(model, **kwargs)
    except CheckError:
        raise  # misuse (a bad option): the caller's error, not the transform's failure
    except Exception as error:  # noqa: BLE001 - a crashing transform is a failed step, named
        return PipelineStep(entry.name, False, False, nodes_before, nodes_before,
                            error=f"raised {type(error).__name__}: {error}"), model
    step = PipelineStep(entry.name, result.modified, True, nodes_before, len(result.model.graph.node), result.report,
                        bodies=any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute))
    if result.modified:
        _verify(step, entry, model, result, feeds, kwargs, run)
    return step, result.model if result.modified else model  # an unchanged copy would defeat `run`'s memory


def _verify(step: PipelineStep, entry: RegisteredTransform, before, result, feeds, kwargs, run) -> None:
    try:
        check_structure(result.model)
    except onnx.checker.ValidationError as error:
        step.passed, step.error = False, f"onnx.checker rejects the result: {str(error).splitlines()[0]}"
        return
    verifier = entry.verifier or verify_values
    try:
        step.verification = _verified(verifier, before, result, feeds, kwargs, run)
    except Exception as error:  # noqa: BLE001 - e.g. ONNX Runtime cannot load the result
        step.passed, step.error = False, f"verification raised {type(error).__name__}: {error}"
        return
    step.passed = step.verification.passed


def _verified(verifier, before, result, feeds, kwargs, run: PipelineMemo) -> Verification:
    """The verifier's verdict; one that fails or raises on batched outputs is taken again on
    per-feed runs: a batch may mix what one feed's run keeps apart, and must not make a failure."""
    try:
        verification = verifier(before, result.model, feeds, result, kwargs, run=run)
    except Exception:
        if not run.holds_batched():
            raise
        verification = None
    if verification is None or (not verification.passed and run.holds_batched()):
        verification = verifier(before, result.model, feeds, result, kwargs, run=run.per_feed)
    return verification
