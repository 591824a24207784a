"""Automatic calibration (`--calibration-method auto`): per activation tensor, the range method among
max, percentile, entropy and mse whose range gives the best model outputs on held-out calibration
feeds.

Why the outputs and not the tensor's own error: a range method trades clipping for rounding, and
which trade is right depends on what the network does downstream. The tensor-local optimum (the
"mse" method) is below plain max on a model whose residual path carries rare large values (measured
on models/bn_before_conv: 19.5 dB against 21.6 dB), while entropy, TensorRT's default, clips
attention's softmax output and loses transformers entirely (4 dB on a ViT where max keeps 26 dB).

How:
1. Every 4th calibration feed (at most 16) is held out for the selection; the statistics and each
   method's range come from the other feeds only. With a single feed there is nothing to hold out:
   the selection then runs on that feed and the report says so.
2. Each method is scored applied to every tensor at once ("uniform"); the best is the start.
3. One pass over the tensors in graph order: each tensor tries the other methods' ranges with every
   other tensor at its current choice, and takes a range only when it raises the score by more than
   MIN_GAIN (so noise does not pick methods). The result is never below the best uniform method on
   the held-out feeds, by construction: it starts there and only ever takes a higher score.
4. The pass has a budget, TRIAL_BUDGET full evaluations of the held-out feeds. A tensor's trials
   cost (distinct other ranges) x (its suffix's share of the graph's nodes: ScaleProbe.trial_cost);
   in graph order, a tensor is tried when its trials fit in what is left, else it keeps the start
   method and the report names it (`untried`). A tensor whose four ranges agree costs nothing.

Why a budget: without one the pass costs (tensors) x (downstream size) x (feeds), quadratic in depth
(measured: 53-60 full evaluations, 140 trials, on the benchmark's 6-layer encoders, two thirds of
their calibration time; ~114 on a 12-layer BERT), for gains that shrink with depth (+0.04 to +0.08
dB on those encoders). With it, the calibration costs the statistics pass, the four ranges per
tensor, 4 + TRIAL_BUDGET full evaluations and a session per tried tensor: linear in model size. (A
taken range runs its suffix once more, for the values later trials read: ScaleProbe.accept; at most
one such run per tried tensor, so never more than the trials themselves; ranges are taken on 2-3
of the 48 tensors of the 6-layer encoders.) Why 32: the costliest complete pass among the sample
models and zoo encoders is 28.5 (models/mobilenetv2_classifier), so every one of them is chosen
exactly as without a budget. Where it binds, the untried tensors are the later ones in graph order whose
trials no longer fit (cheap late tensors still do), and it gives up what their trials would have
found: 0.000-0.014 dB of held-out score on the 6-layer encoders and a 12-layer BERT
(`benchmarks/bench_quantization.py --unbudgeted` prints it per model). Why graph order, and not the
tensors whose ranges differ most first or a skip of near-equal ranges: a tensor's range spread does
not predict its gain (mobilenetv2_classifier's input: ranges 0.4% apart, +1.3 dB), and early tensors
gain most (everything downstream sees them). Replayed on the per-tensor gains measured on the 7
samples, 3 zoo and 3 benchmark encoders, the gain given up in total at budgets of 8 / 16 / 24 is
2.06 / 0.48 / 0.38 dB in graph order, 3.86 / 1.84 / 1.74 dB widest spread first, 3.50 / 1.25 / 0.16
dB cheapest first; at 32 only the benchmark encoders lose anything (the figures above).

The score is an `Objective` (quant/objective.py; default the worst output's SQNR), computed by a
`ScaleProbe` (quant/probe.py): one QDQ model with every activation scale a graph input, so no
candidate needs a session of its own, and a tensor's trials run only the nodes downstream of it.
Cost: one statistics pass over the kept feeds (its session also gives the float reference on the
held-out feeds), the four ranges of each tensor from its histogram (quant/ranges.py, vectorized), 4
full runs of the held-out feeds and the budgeted trials, the held-out feeds stacked into one batch
where the model allows (quant/feed_batch.py). Measured on the sample models (2 shared cores, the
calibration alone): the ranges were its largest step, 35-57% (entropy and mse search 2000-3500
candidate thresholds x 128 levels: 10-35 ms a tensor, by load), then the per-tensor pass 10-30%,
the statistics pass 10-30%, the probe's construction (its QDQ model, shape inference, sessions)
~10%, the 4 uniform runs 5-10%. The entropy search now reads its level starts from a shared table
and works in place (half its time); the ranges are the same bit for bit. Threads for the ranges
were measured slower on the loaded machine (memory-bound), so they run on one. Which range wins
is decided as if each candidate's QDQ model were written and run: the probe's score is the
unoptimized written model's; the optimized run the ort-int8 verdict makes can differ by ONNX
Runtime's kernel choice (at most 2.2e-3 dB measured, below MIN_GAIN; tests/test_quant_auto.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from onnx2trt_check.quant.calibrate import statistics_and_outputs
from onnx2trt_check.quant.feed_batch import all_copies
from onnx2trt_check.quant.insert_qdq import QdqPlan
from onnx2trt_check.quant.objective import Objective, beats, output_sqnr_db, score_key
from onnx2trt_check.quant.probe import ScaleProbe
from onnx2trt_check.quant.ranges import METHODS, compute_amax

SELECTION_EVERY = 4
MAX_SELECTION_FEEDS = 16
# A tensor leaves the current method only for a gain above this in dB (the default objective's unit;
# a task objective's figure counts any rise, its SQNR tie-break this gain: objective.beats).
MIN_GAIN = 0.01
# The per-tensor pass spends at most this many full evaluations of the held-out feeds (module doc).
TRIAL_BUDGET = 32.0

Feeds = Sequence[Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class TensorChoice:
    """The method chosen for one tensor, its range, and the score with each method's range there
    (`tried` False: its trials did not fit in the budget; only the start method's score is known)."""

    tensor: str
    method: str
    amax: float
    scores: dict[str, float]
    tried: bool = True


@dataclasses.dataclass
class AutoRanges:
    """The ranges chosen per tensor and how: the uniform scores, the start, the final score, how
    many feeds fitted the statistics and judged the choice (`held_out` False: the same feed did both),
    the trial budget and what the pass spent of it (full evaluations), and the tensors whose trials
    did not fit (they keep the start method)."""

    amax: dict[str, float]
    choices: dict[str, TensorChoice]
    uniform_scores: dict[str, float]
    start: str
    final_score: float
    fit_feeds: int
    selection_feeds: int
    held_out: bool
    evaluations: int = 0
    budget: float = TRIAL_BUDGET
    spent: float = 0.0
    untried: list[str] = dataclasses.field(default_factory=list)

    def figures(self) -> dict:
        return {
            "start": self.start, "uniform_scores": self.uniform_scores, "final_score": self.final_score,
            "fit_feeds": self.fit_feeds, "selection_feeds": self.selection_feeds, "held_out": self.held_out,
            "evaluations": self.evaluations, "trial_budget": self.budget, "trial_cost": round(self.spent, 2),
            "tensors": len(self.choices), "tensors_untried": list(self.untried),
        }


def split_held_out(feeds: Feeds, *, every: int = SELECTION_EVERY, cap: int | None = MAX_SELECTION_FEEDS) -> tuple[list, list, bool]:
    """(kept, held out, whether they differ): every `every`-th feed held out (interleaved, so feeds
    sorted by class or time split evenly), at most `cap` of them (None: no cap). A single feed is
    both, and so are copies of one feed: nothing can be held out. Defaults: every 4th, at most 16."""
    feeds = list(feeds)
    if len(feeds) < 2 or all_copies(feeds):
        return feeds, feeds[:1], False
    held_indices = list(range(every - 1, len(feeds), every))[:cap] or [len(feeds) - 1]
    held = set(held_indices)
    return [f for i, f in enumerate(feeds) if i not in held], [feeds[i] for i in held_indices], True


def auto_ranges(model: onnx.ModelProto, plan: QdqPlan, feeds: Feeds, *, percentile: float = 99.99,
                objective: Objective = output_sqnr_db, selection_feeds: Feeds | None = None, progress: bool = False,
                budget: float | None = None) -> AutoRanges:
    """The range of every activation of `plan`, chosen per tensor as the module doc says.
    `selection_feeds` (the labelled feeds a task objective scores) judge the choice instead of
    held-out calibration feeds; the ranges then come from every calibration feed. `budget` bounds
    the per-tensor pass in full evaluations of those feeds (math.inf: every tensor is tried).
    Defaults: percentile 99.99 (the percentile method's), the worst output SQNR as the objective,
    held-out calibration feeds, TRIAL_BUDGET."""
    budget = TRIAL_BUDGET if budget is None else budget
    if selection_feeds is None:
        fit, held, held_out = split_held_out(feeds)
    else:
        fit, held, held_out = list(feeds), list(selection_feeds), True
    stats, reference = statistics_and_outputs(model, fit, plan.activations, held, progress=progress)
    candidates = {t: {m: compute_amax(stats[t], m, percentile=percentile) for m in METHODS} for t in plan.activations}
    probe = ScaleProbe(model, plan, held, objective, reference)
    trials = {m: probe.evaluate({t: c[m] for t, c in candidates.items()}) for m in METHODS}
    uniform = {m: trial.score for m, trial in trials.items()}
    start = max(METHODS, key=lambda m: (score_key(uniform[m]), -METHODS.index(m)))  # ties: the first in METHODS
    probe.settle({t: c[start] for t, c in candidates.items()}, trials[start])
    del trials
    choices, final, spent = _per_tensor_pass(probe, candidates, start, uniform[start], budget)
    amax = {t: c.amax for t, c in choices.items()}
    untried = [t for t, c in choices.items() if not c.tried]
    return AutoRanges(amax, choices, uniform, start, final, len(fit), len(held), held_out, probe.evaluations, budget, spent, untried)


def _per_tensor_pass(probe: ScaleProbe, candidates: dict[str, dict[str, float]], start: str, score: float, budget: float):
    methods = dict.fromkeys(candidates, start)
    choices, spent = {}, 0.0
    for tensor, ranges in candidates.items():
        by_range = {ranges[m]: None for m in METHODS if ranges[m] != ranges[start]}  # methods that agree run once
        cost = len(by_range) * probe.trial_cost(tensor) if by_range else 0.0
        if spent + cost > budget:
            choices[tensor] = TensorChoice(tensor, start, ranges[start], {start: score}, tried=False)
            continue
        spent += cost
        by_range = {amax: probe.try_range(tensor, amax) for amax in by_range}
        trials = {m: by_range[ranges[m]] for m in METHODS if ranges[m] in by_range}
        scores = {m: trials[m].score if m in trials else score for m in METHODS}
        best = max(METHODS, key=lambda m: (score_key(scores[m]), -METHODS.index(m)))
        if beats(scores[best], score, min_gain_db=MIN_GAIN):
            methods[tensor], score = best, scores[best]
            probe.accept(tensor, ranges[best], trials[best])
        choices[tensor] = TensorChoice(tensor, methods[tensor], ranges[methods[tensor]], scores)
    return choices, score, spent
