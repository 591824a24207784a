"""Verify, then write: the int8 model against the float one, under the int8 floor, on real data.

* The floor is the int8 precision profile (config.PRECISION_PROFILES["int8"]: SQNR >= 20 dB, cosine
  >= 0.99, top-1 agreement >= 95% on class scores) with the project's overrides on top
  (config.project_tolerances: [tool.onnx2trt_check] of pyproject.toml, the pytest ini, the command
  line), applied by compare.compare_output: exactly what the `ort-int8` item of `pytest --model`
  applies in the same folder, so `quantize` writes what that item passes.
* The data: the test inputs when given; otherwise a held-out part of the calibration data (every
  5th feed), which the quantizer then does not see. Random inputs never judge a calibrated model:
  they are not the distribution it was calibrated for (a model fine on real data measured 4 dB on
  uniform noise). A single calibration feed cannot be split: it then judges itself, and says so.
* Below the floor, the tensors that explain it: a layerwise comparison of both models over the first
  feeds (bisection/layerwise.py), its worst tensors by SQNR with the nodes they belong to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from onnx2trt_check.compare import OutputStats, Tolerance, accepts_zero_text, allowed_disagreements, format_stats
from onnx2trt_check.config import ToleranceConfig
from onnx2trt_check.errors import first_line
from onnx2trt_check.feed_digest import feeds_sha256
from onnx2trt_check.gathered_rows import compare, figures_note, paired_indices
from onnx2trt_check.liveness import dead_model_problem
from onnx2trt_check.output_layout import output_layouts
from onnx2trt_check.quant.feed_batch import all_copies
from onnx2trt_check.runtime import run_model

INT8 = "int8"
VERIFICATION_EVERY = 5
WORST_TENSORS = 5
# The layerwise comparison holds every tensor of both models per feed: a few feeds suffice to rank.
LAYERWISE_FEEDS = 4

Feeds = Sequence[Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class VerificationSplit:
    """The feeds the quantizer calibrates on, the feeds the result is judged on, and how they relate."""

    calibration: list
    test: list
    held_out: bool
    shared: int = 0  # test feeds that are calibration feeds too (the same file given to --inputs and --calibration-data)

    def overlap_text(self) -> str:
        """'' or what the figure is not: on held-out data, where test feeds were calibrated on (zoo16)."""
        if not self.shared:
            return ""
        return (f"{self.shared} of {len(self.test)} test feed(s) are calibration feeds too, so the int8 figure is not on held-out data; "
                "pass other data to --inputs for an unbiased one")

    def describe(self, source: str) -> str:
        if not self.held_out:
            what = "a single feed" if len(self.calibration) < 2 else f"{len(self.calibration)} copies of one feed"
            return f"the calibration data '{source}' itself ({what}: nothing to hold out; pass --inputs for an unbiased figure)"
        return (f"{len(self.test)} held-out feed(s) of the calibration data '{source}' (every {VERIFICATION_EVERY}th feed; "
                f"the quantizer calibrated on the other {len(self.calibration)})")


def verification_split(calibration: Feeds, test: Feeds | None = None) -> VerificationSplit:
    """With test feeds: calibrate on all of `calibration`, judge on `test`. Without: every 5th
    calibration feed is held out for judging (a single feed is both, and so are copies of one feed:
    a "held-out" copy is the calibration data itself, and its figure must not claim otherwise)."""
    calibration = list(calibration)
    if test is not None:
        seen = {feeds_sha256([feed]) for feed in calibration}
        return VerificationSplit(calibration, list(test), True, shared=sum(feeds_sha256([feed]) in seen for feed in test))
    if len(calibration) < 2 or all_copies(calibration):
        return VerificationSplit(calibration, calibration[:1], False)
    held = set(range(VERIFICATION_EVERY - 1, len(calibration), VERIFICATION_EVERY)) or {len(calibration) - 1}
    return VerificationSplit([f for i, f in enumerate(calibration) if i not in held], [calibration[i] for i in sorted(held)], True)


@dataclasses.dataclass
class Int8Verdict:
    """Per output the comparison under the int8 floor; the failing ones' messages; and when
    something failed, the worst tensors of the layerwise comparison."""

    outputs: dict[str, OutputStats]
    failures: list[str]
    worst: list = dataclasses.field(default_factory=list)
    floors: dict[str, Tolerance] = dataclasses.field(default_factory=dict)
    task: dict | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def figures(self) -> dict[str, dict]:
        return {name: {"sqnr_db": s.sqnr_db, "cosine": s.cosine, "top1": s.top1, "rows": s.rows, "near_ties": s.near_ties, "passed": s.passed,
                       "discrete": s.discrete} for name, s in self.outputs.items()}

    def floor_text(self, name: str) -> str:
        """The floor output `name` was held to, e.g. 'SQNR >= 20 dB, cosine >= 0.99, top-1 >= 95%' (top-1
        only where it applies: class scores [N, C], not a decoder's [B, T, V] logits)."""
        floor, stats = self.floors[name], self.outputs[name]
        if stats.discrete and floor.min_top1 is not None and stats.top1 is not None:  # labels, indices: agreement alone (compare._compare)
            return _top1_floor_text(floor.min_top1, stats.rows, alone=True).replace("top-1", "agreement") + figures_note(stats)
        parts = [f"SQNR >= {floor.min_sqnr_db:g} dB" if floor.min_sqnr_db is not None else None,
                 f"cosine >= {floor.min_cosine:g}" if floor.min_cosine is not None else None,
                 _top1_floor_text(floor.min_top1, self.outputs[name].rows) if floor.min_top1 is not None and self.outputs[name].top1 is not None else None,
                 f"atol {floor.atol:g}" if floor.atol is not None else None, f"rtol {floor.rtol:g}" if floor.rtol is not None else None]
        text = ", ".join(p for p in parts if p) or "no floor"
        return text + figures_note(stats) + (f"; {accepts_zero_text([name])}" if self.outputs[name].accepts_zero else "")


def _top1_floor_text(floor: float, rows: int, *, alone: bool = False) -> str:
    """'top-1 >= 95%', and the disagreements allowed when there are too few rows for the rate to
    allow one (compare.allowed_disagreements): "83.3% (floor 95%)" must not read as a pass by mistake."""
    allowed = allowed_disagreements(floor, rows, alone=alone)
    if rows and allowed > (1.0 - floor) * rows:
        return f"top-1 >= {floor:.0%}, at most {allowed} of {rows} row(s) disagreeing: too few rows for the rate"
    return f"top-1 >= {floor:.0%}"


def int8_floor(name: str, tolerances: ToleranceConfig | None = None):
    """The tolerance an int8 output is held to (the `ort-int8` item's, by the same call)."""
    return (tolerances or ToleranceConfig()).for_output(name, INT8)


def verify_int8(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, feeds: Feeds, *, tolerances: ToleranceConfig | None = None,
                metric=None) -> Int8Verdict:
    """The int8 model's outputs against the float model's on `feeds` under the int8 floor, both on
    ONNX Runtime's CPU (the float model as written, the int8 one optimized with its Q/DQ as
    written, as the ort-int8 target runs it). `tolerances` are the project's (the `quantize`
    command and api.quantize pass config.project_tolerances). Defaults to the built-in profile.
    With a `metric` (task_metrics.TaskMetric for these feeds) the task figures of both models are
    reported too (`task`); they inform, the floor stays the output metrics'."""
    reference = run_model(float_model, feeds, optimized=False)
    if problem := dead_model_problem(float_model, feeds, reference):
        return Int8Verdict({}, [f"nothing is verified: {problem}; give data the model responds to (--inputs, --calibration-data) or check the model itself (onnx2trt-check check)"])
    try:
        quantized = run_model(int8_model, feeds, optimized=True)
    except Exception as exc:  # noqa: BLE001 - ORT's own failure on the Q/DQ model (its graph optimizer on fused ops: measured)
        return Int8Verdict({}, [f"ONNX Runtime cannot run the int8 model ({type(exc).__name__}: {first_line(exc)}), so it cannot be verified"])
    outputs, failures, floors, layouts = {}, [], {}, output_layouts(float_model, feeds)  # as pytest's ort-int8 item judges them
    indices = paired_indices(float_model, int8_model, feeds, reference, quantized)  # rows a TopK's indices gather (gathered_rows)
    for name in reference[0]:
        floors[name] = tolerance = int8_floor(name, tolerances)
        stats = compare(name, [r[name] for r in reference], [q[name] for q in quantized], tolerance, layouts.get(name), *indices)
        outputs[name] = stats
        if not stats.passed:
            failures.append(format_stats(stats, tolerance))
    verdict = Int8Verdict(outputs, failures, floors=floors)
    if metric is not None:
        verdict.task = {"metric": metric.source, "reference": metric.evaluate(reference), "int8": metric.evaluate(quantized)}
    if failures:
        verdict.worst = worst_tensors(float_model, int8_model, feeds[:LAYERWISE_FEEDS])
    return verdict


def worst_tensors(float_model: onnx.ModelProto, int8_model: onnx.ModelProto, feeds: Feeds, count: int = WORST_TENSORS) -> list:
    """The first divergent tensor, then the lowest-SQNR ones, of the layerwise comparison (at most
    `count` rows in all). Defaults to 5."""
    from onnx2trt_check.bisection.layerwise import layerwise_compare

    report = layerwise_compare(float_model, int8_model, feeds)
    first = report.first_divergent
    ranked = ([first] if first else []) + sorted((r for r in report.tensors if r is not first), key=lambda row: row.sqnr_db)
    return ranked[:count]
