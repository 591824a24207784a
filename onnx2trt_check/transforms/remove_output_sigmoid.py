"""Strip a Sigmoid that feeds a graph output: the deployed model returns logits, and a threshold t
on probabilities becomes the threshold logit(t) = ln(t / (1 - t)) on logits (sigmoid is strictly
increasing, so `sigmoid(z) > t` iff `z > logit(t)` in exact arithmetic). The output keeps its name.

Only outputs the user declares as scores are stripped, each with the probability thresholds it is
compared with (`scores`): the rewrite changes the output's values, and is right only if every
consumer thresholds them. A Sigmoid on box coordinates is not a score (stripped, the boxes were off
by up to 0.5 while decisions at 0.5 "agreed"), and no threshold the user did not give is checked.

In floating point the two decisions can differ for z near logit(t): the float32 sigmoid rounds
(and saturates to 0 or 1), so `decisions_agree` checks the equivalence outside a rounding band and
counts the elements inside it (see there for the exact rule).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.graph_utils import is_op, node_label, to_ir, to_onnx
from onnx2trt_check.transforms.verify import Runner, Verification, compare_runs

# Rounding allowance of the probability, in ulps of 0.5 (absolute, not relative to t): ONNX
# Runtime's float32 Sigmoid is a vectorized approximation whose absolute error is up to ~2.8 ulps
# of 0.5 (1.6e-7) for every z, so for small t it cannot resolve t finer than that (measured
# on z in [-100, 30]; the test suite re-checks it against the kernel).
BAND_ULPS = 4


@dataclasses.dataclass(frozen=True)
class DecisionAgreement:
    """How `probabilities > threshold` and `logits > logit(threshold)` compare, element by element."""

    threshold: float
    logit: float
    agree: bool
    disagreements: int  # outside the rounding band: a real difference
    in_band: int  # elements within the band, whatever they decided
    flipped_in_band: int  # of those, how many decided differently (expected rounding)
    total: int

    def summary(self) -> str:
        verdict = "agree" if self.agree else "DISAGREE"
        return (f"decisions at t={self.threshold!r} (logit {self.logit:.9g}) {verdict}: "
                f"{self.disagreements}/{self.total} differ outside the rounding band, "
                f"{self.flipped_in_band} of {self.in_band} in the band flipped")


def logit_threshold(t: float) -> float:
    """ln(t / (1 - t)) in float64, for t strictly between 0 and 1."""
    t = _check_threshold(t)
    return math.log(t) - math.log1p(-t)


def _check_threshold(t) -> float:
    value = float(t)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"--threshold {t!r} is outside (0, 1); pass a probability strictly between 0 and 1")
    return value


def decision_band(logits: np.ndarray, t: float, *, dtype) -> np.ndarray:
    """Half-width, per element, of the logit interval around logit(t) where rounding may flip a
    decision: BAND_ULPS ulps of max(t, 0.5) in `dtype` (the sigmoid's absolute error) mapped
    through the derivative of the logit, dz = dp / (t (1 - t)), plus BAND_ULPS ulps of z."""
    probability_error = BAND_ULPS * float(np.spacing(np.asarray(max(t, 0.5), dtype=dtype)))
    logit_ulp = np.spacing(np.abs(logits).astype(dtype)).astype(np.float64)
    return probability_error / (t * (1.0 - t)) + BAND_ULPS * logit_ulp


def decisions_agree(probabilities: np.ndarray, logits: np.ndarray, t: float) -> DecisionAgreement:
    """Whether `probabilities > t` (the model with its Sigmoid) and `logits > logit(t)` (without)
    decide the same.

    The rule: logit(t) is computed in float64, both comparisons are strict and done in float64, and
    an element counts as a disagreement only if the decisions differ AND |z - logit(t)| exceeds
    `decision_band` (the sigmoid's absolute rounding error mapped to logits, plus a few ulps of z).
    Elements inside the band are counted, and those that flipped reported, but they do not fail
    the check: there the float32 sigmoid itself cannot resolve the threshold. NaN decides False on
    both sides.
    """
    threshold = logit_threshold(t)
    probabilities = np.asarray(probabilities)
    z = np.asarray(logits, dtype=np.float64)
    by_probability = probabilities.astype(np.float64) > t
    by_logit = z > threshold
    in_band = np.abs(z - threshold) <= decision_band(np.asarray(logits), t, dtype=probabilities.dtype)
    differ = by_probability != by_logit
    disagreements = int(np.count_nonzero(differ & ~in_band))
    return DecisionAgreement(float(t), threshold, disagreements == 0, disagreements,
                             int(in_band.sum()), int(np.count_nonzero(differ & in_band)), int(z.size))


def verify_decisions(before, after, feeds, result: TransformResult, options, run: Runner = run_model) -> Verification:
    """The pipeline's rule for this transform: on `feeds`, every stripped output decides like the
    original at each threshold declared for it (`decisions_agree`), and every other output keeps
    its values (`verify.compare_runs`)."""
    feeds = list(feeds)
    expected, actual = run(before, feeds), run(after, feeds)
    stripped = result.report.figures.get("stripped_outputs", [])
    declared = result.report.figures.get("logit_thresholds", {})
    agreements = [
        decisions_agree(run_before[name], run_after[name], float(t))
        for name in stripped for t in declared[name] for run_before, run_after in zip(expected, actual)
    ]
    others = compare_runs(expected, actual, names=[n for n in expected[0] if n not in stripped])
    failed = [a for a in agreements if not a.agree]
    summary = "; ".join([failed[0].summary()] if failed else [f"{len(agreements)} decision checks agree"])
    figures = {"decisions": [dataclasses.asdict(a) for a in agreements], "other_outputs": others.to_dict()}
    return Verification(not failed and others.passed, f"{summary}; other outputs {others.summary}", figures)


SINGLE_OUTPUT = ""  # the key of `scores` that means "the model's only output"


def remove_output_sigmoid(model: onnx.ModelProto, *, scores: Mapping[str, Iterable[float]] | None = None) -> TransformResult:
    """Remove the Sigmoid in front of each graph output declared in `scores` (output name -> the
    probability thresholds it is compared with, at least one; the key "" names the model's only
    output). Every other output Sigmoid stays and is reported as a skip with the reason. Defaults
    to no declared score: nothing is removed.

    `report.figures["logit_thresholds"]` maps each stripped output to {repr(t): logit(t)};
    `report.figures["stripped_outputs"]` lists the outputs that now carry logits."""
    ir_model = to_ir(model)
    graph = ir_model.graph
    report = TransformReport(figures={"logit_thresholds": {}, "stripped_outputs": []})
    declared = _declared_scores(graph, scores or {}, report)
    for output in list(graph.outputs):
        if output.name not in declared:
            if is_op(output.producer(), "Sigmoid"):
                report.skipped([output.name], _undeclared(output))
            continue
        if problem := _sigmoid_problem(output):
            report.skipped([output.name], problem)
            continue
        sigmoid, name = output.producer(), output.name
        report.matched([node_label(sigmoid)], f"output '{name}' now carries logits")
        _strip(graph, sigmoid)
        report.figures["stripped_outputs"].append(name)
        report.figures["logit_thresholds"][name] = {repr(t): logit_threshold(t) for t in declared[name]}
    if not report.matches:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return TransformResult(copy, False, report)
    return TransformResult(to_onnx(ir_model), True, report)


def _declared_scores(graph: ir.Graph, scores: Mapping[str, Iterable[float]], report: TransformReport) -> dict[str, tuple[float, ...]]:
    """Output name -> its thresholds (validated). "" becomes the only output's name; on a model with
    several outputs it names none, and a name that is not an output of this model is reported (in a
    folder of models, the declaration may be meant for another model)."""
    names = [value.name for value in graph.outputs]
    declared = {}
    for name, thresholds in scores.items():
        values = tuple(sorted({_check_threshold(t) for t in thresholds}))
        if not values:
            raise ConfigError(f"output '{name or 'the only output'}' is declared a score without a threshold; give at least one")
        if name == SINGLE_OUTPUT and len(names) != 1:
            report.skipped(names, f"a threshold without an output name applies to a model with one output; this one has {len(names)}: "
                                  f"name the score output, --threshold OUTPUT:P (outputs: {', '.join(names)})")
        elif name != SINGLE_OUTPUT and name not in names:
            report.skipped([name], f"'{name}' is declared a score, but the model has no such output (outputs: {', '.join(names)})")
        else:
            declared[names[0] if name == SINGLE_OUTPUT else name] = values
    return declared


def _undeclared(output: ir.Value) -> str:
    return (f"output '{output.name}' ends in a Sigmoid but is not declared a score: removing it changes the output's values, which "
            f"is right only where every consumer thresholds them; if it is a score, pass --threshold {output.name}:P for each "
            "probability threshold it is compared with")


def _sigmoid_problem(output: ir.Value) -> str:
    producer = output.producer()
    if not is_op(producer, "Sigmoid"):
        kind = "a graph input or constant" if producer is None else f"{producer.op_type} '{node_label(producer)}'"
        return f"output '{output.name}' comes from {kind}, not a Sigmoid"
    if output.uses():
        return f"output '{output.name}' is also read inside the graph, so the Sigmoid must stay"
    if sum(1 for value in output.graph.outputs if value is output) > 1:
        return f"output '{output.name}' is listed twice among the graph outputs"
    return ""


def _strip(graph: ir.Graph, sigmoid: ir.Node) -> None:
    """Replace the Sigmoid by its input under the output's name; when that input cannot be renamed
    (a graph input, an initializer or another output), an Identity carries the name instead."""
    output, logits = sigmoid.outputs[0], sigmoid.inputs[0]
    name = output.name
    if logits.is_graph_input() or logits.is_initializer() or logits.is_graph_output():
        sigmoid.op_type = "Identity"
        return
    graph.remove(sigmoid, safe=False)
    for node, index in list(output.uses()):
        node.replace_input_with(index, logits)
    for position, value in enumerate(graph.outputs):
        if value is output:
            graph.outputs[position] = logits
    sigmoid.replace_input_with(0, None)
    output.name = None
    logits.name = name
    logits.type, logits.shape = output.type, output.shape
