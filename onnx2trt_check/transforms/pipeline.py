"""Apply the registered transforms in order, verifying every step that changed the model.

Each modifying step must pass onnx.checker and its verifier (value equivalence in ONNX Runtime on
the given feeds; decision agreement for remove_output_sigmoid). The pipeline stops at the first
step that fails and names it; its result model is the last one that passed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

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
from onnx2trt_check.transforms.verify import Verification, as_feed_list, verify_values


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

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: FAILED, {self.error}"
        if not self.modified:
            return f"{self.name}: no change"
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.name}: {verdict}, {self.nodes_before} -> {self.nodes_after} nodes; {self.verification.summary}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PipelineResult:
    model: onnx.ModelProto  # after the last step that passed
    steps: list[PipelineStep]
    failed_step: str | None = None

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
) -> PipelineResult:
    """Apply `passes` in the order given (names from the registry, or `RegisteredTransform`
    entries) to `model`, verifying each modifying step on `feeds`. Defaults to every registered
    transform in registry order. `options` maps a transform name to keyword options that update
    its defaults.
    """
    entries = _resolve(passes)
    options = _checked_options(options, entries)
    feeds = as_feed_list(feeds)
    run = _RememberingRunner(feeds)
    current, steps = model, []
    for entry in entries:
        kwargs = {**entry.defaults, **options.get(entry.name, {})}
        step, candidate = _run_step(entry, current, feeds, kwargs, run)
        steps.append(step)
        if not step.passed:
            return PipelineResult(_not_the_input(current, model), steps, entry.name)
        current = candidate
    return PipelineResult(_not_the_input(current, model), steps)


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


def _not_the_input(current: onnx.ModelProto, model: onnx.ModelProto) -> onnx.ModelProto:
    """The result is never the caller's own proto (editing it must not edit their model)."""
    return gu.copy_model(model) if current is model else current


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


class _RememberingRunner:
    """run_model that remembers the outputs of the last models it ran on the pipeline's feeds: a
    step's result is the next step's `before`, so every model of the pipeline runs once, not twice
    (an ONNX Runtime session per run is most of a verified step's time)."""

    def __init__(self, feeds: list) -> None:
        self._feeds = feeds
        self._remembered: list[tuple[onnx.ModelProto, list]] = []  # (model, outputs), the newest last

    def __call__(self, model: onnx.ModelProto, feeds) -> list:
        if len(feeds) != len(self._feeds) or any(a is not b for a, b in zip(feeds, self._feeds)):
            return run_model(model, feeds)  # other feeds (a verifier that maps them): nothing to reuse
        for known, outputs in self._remembered:
            if known is model:
                return outputs
        outputs = run_model(model, feeds)
        self._remembered = [*self._remembered[-1:], (model, outputs)]
        return outputs


def _run_step(entry: RegisteredTransform, model, feeds, kwargs, run) -> tuple[PipelineStep, onnx.ModelProto]:
    nodes_before = len(model.graph.node)
    try:
        result = entry.function(model, **kwargs)
    except CheckError:
        raise  # misuse (a bad option): the caller's error, not the transform's failure
    except Exception as error:  # noqa: BLE001 - a crashing transform is a failed step, named
        return PipelineStep(entry.name, False, False, nodes_before, nodes_before,
                            error=f"raised {type(error).__name__}: {error}"), model
    step = PipelineStep(entry.name, result.modified, True, nodes_before, len(result.model.graph.node), result.report)
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
        step.verification = verifier(before, result.model, feeds, result, kwargs, run=run)
    except Exception as error:  # noqa: BLE001 - e.g. ONNX Runtime cannot load the result
        step.passed, step.error = False, f"verification raised {type(error).__name__}: {error}"
        return
    step.passed = step.verification.passed
