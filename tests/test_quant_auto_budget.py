"""The automatic calibration's trial budget: the per-tensor pass spends at most its budget (in full
evaluations of the held-out feeds), leaves untried only the tensors whose trials did not fit in
what was left, makes the choices an unbudgeted pass makes on the tensors it reaches first, stays at
or above the best uniform method, and says in the report which tensors it did not try. Near-equal
ranges are still tried: on a real model they are where a large gain is."""

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_quant_auto import _model_and_feeds, residual_model

from onnx2trt_check.cli.main import main
from onnx2trt_check.data import feeds_from_npz
from onnx2trt_check.model import load_model, resolve_input_specs
from onnx2trt_check.quant import auto_range
from onnx2trt_check.quant.auto_range import MIN_GAIN, auto_ranges, split_held_out
from onnx2trt_check.quant.calibrate import collect_statistics
from onnx2trt_check.quant.insert_qdq import plan_qdq
from onnx2trt_check.quant.probe import ScaleProbe
from onnx2trt_check.quant.ranges import METHODS, compute_amax

MODELS = Path(__file__).resolve().parents[1] / "models"


def _recorded(monkeypatch):
    """Every trial the pass runs, as (tensor, its cost in full evaluations), and the probes made."""
    trials, probes, try_range, init = [], [], ScaleProbe.try_range, ScaleProbe.__init__

    def recording(probe, tensor, amax):
        trials.append((tensor, probe.trial_cost(tensor)))
        return try_range(probe, tensor, amax)

    def kept(probe, *args, **kwargs):
        init(probe, *args, **kwargs)
        probes.append(probe)

    monkeypatch.setattr(ScaleProbe, "try_range", recording)
    monkeypatch.setattr(ScaleProbe, "__init__", kept)
    return trials, probes


def _candidates(model, plan, feeds):
    """Each tensor's four ranges, computed here as the module doc says (statistics of the kept feeds)."""
    fit, _, _ = split_held_out(feeds)
    stats = collect_statistics(model, fit, plan.activations)
    return {t: {m: compute_amax(stats[t], m) for m in METHODS} for t in plan.activations}


@settings(deadline=None, max_examples=8)
@given(seed=st.integers(0, 10_000), budget=st.floats(0, 8))
def test_the_pass_spends_at_most_its_budget_and_skips_only_what_did_not_fit(seed, budget):
    model, feeds = _model_and_feeds(seed, residual_model())
    plan = plan_qdq(model)
    with pytest.MonkeyPatch.context() as monkeypatch:
        trials, probes = _recorded(monkeypatch)
        found = auto_ranges(model, plan, feeds, budget=budget)
    spent = sum(cost for _, cost in trials)
    assert spent <= budget + 1e-9 and found.spent == pytest.approx(spent)
    assert all(0 < cost <= 1 for _, cost in trials)
    assert found.final_score >= max(found.uniform_scores.values())
    # first fit in graph order: a tensor is tried (once per distinct other range) when its trials fit
    # in what is left, else left untried at the start method; a tensor whose ranges agree costs nothing
    left = budget
    for tensor, ranges in _candidates(model, plan, feeds).items():
        others = {ranges[m] for m in METHODS} - {ranges[found.start]}
        cost = len(others) * probes[0].trial_cost(tensor)
        ran = [t for t, _ in trials if t == tensor]
        if tensor in found.untried:
            assert others and cost > left + 1e-12 and not ran
            choice = found.choices[tensor]
            assert not choice.tried and choice.method == found.start and set(choice.scores) == {found.start}
        else:
            assert len(ran) == len(others) and cost <= left + 1e-12
            left -= cost


def test_a_budget_of_nothing_tries_nothing_and_keeps_the_best_uniform_method(monkeypatch):
    model, feeds = _model_and_feeds(0, residual_model())
    trials, _ = _recorded(monkeypatch)
    found = auto_ranges(model, plan_qdq(model), feeds, budget=0.0)
    assert not trials and found.spent == 0.0
    assert found.final_score == max(found.uniform_scores.values()) == found.uniform_scores[found.start]
    assert all(c.method == found.start for c in found.choices.values())
    assert found.untried and set(found.untried) <= set(found.choices)
    assert found.figures()["tensors_untried"] == found.untried


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_binding_budget_chooses_what_the_unbudgeted_pass_chooses_up_to_the_first_untried_tensor(seed):
    model, feeds = _model_and_feeds(seed, residual_model())
    plan = plan_qdq(model)
    full = auto_ranges(model, plan, feeds, budget=math.inf)
    assert not full.untried
    budget = full.spent / 2
    cut = auto_ranges(model, plan, feeds, budget=budget)
    assert cut.untried and cut.spent <= budget
    for tensor in cut.choices:
        if tensor in cut.untried:
            break
        assert cut.choices[tensor] == full.choices[tensor]
    assert cut.final_score >= max(cut.uniform_scores.values())


def test_the_default_budget_is_read_when_the_search_runs(monkeypatch):
    model, feeds = _model_and_feeds(0, residual_model())
    monkeypatch.setattr(auto_range, "TRIAL_BUDGET", 0.0)
    found = auto_ranges(model, plan_qdq(model), feeds)
    assert found.budget == 0.0 and found.untried


def test_near_equal_ranges_are_tried_because_they_can_gain_decibels():
    """mobilenetv2_classifier's input: its four ranges lie within 0.5% of each other, and taking
    another one raises the output SQNR by more than a decibel (the input data sit on a grid that
    one scale matches). A pass that skipped trials of near-equal ranges would lose that."""
    entry = json.loads((MODELS / "manifest.json").read_text())["models"]["mobilenetv2_classifier"]
    model = load_model(MODELS / entry["file"]).proto
    feeds = feeds_from_npz(MODELS / entry["data"]["calibration"], resolve_input_specs(model, {}))
    found = auto_ranges(model, plan_qdq(model), feeds)
    name = model.graph.input[0].name
    choice = found.choices[name]
    assert choice.tried and choice.method != found.start
    scores = [choice.scores[m] for m in METHODS]
    assert max(scores) - choice.scores[found.start] > 100 * MIN_GAIN
    assert not found.untried  # the sample's whole pass fits in the default budget


def test_the_report_names_the_tensors_the_budget_left_untried(tmp_path, capsys, monkeypatch):
    model, calibration = str(MODELS / "mobilenetv2_classifier.onnx"), str(MODELS / "mobilenetv2_classifier.calib.npz")
    monkeypatch.setattr(auto_range, "TRIAL_BUDGET", 4.0)
    assert main(["quantize", model, "-o", str(tmp_path / "q.onnx"), "--calibration-data", calibration, "--accept-degraded"]) in (0, 1)
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith("auto: "))
    assert "of a budget of 4 full evaluations" in summary and "tensor(s) not tried" in summary
    untried = [line for line in out.splitlines() if line.startswith("  activation ") and "not tried: the trial budget was spent" in line]
    tried = [line for line in out.splitlines() if line.startswith("  activation ") and "output SQNR with: " in line]
    assert untried and tried
    assert f"{len(untried)} of {len(untried) + len(tried) + _agreeing(out)} tensor(s) not tried" in summary


def _agreeing(out: str) -> int:
    """Activations whose four ranges agree: no trial, no scores of other methods."""
    return sum(
        1 for line in out.splitlines() if line.startswith("  activation ") and "output SQNR with: " not in line and "not tried" not in line
    )


def test_a_model_with_a_subgraph_counts_every_trial_as_a_full_evaluation(monkeypatch):
    """A node holding a subgraph leaves the probe without suffixes (no cut is known to be safe), so a
    trial is a full evaluation: it costs 1, and the budget stops the pass after as many of them."""
    text = """<ir_version: 8, opset_import: ["": 17]>
    g (float[1, 8] x, bool c) => (float[1, 8] y) {
        h = MatMul(x, w1)
        r = Relu(h)
        k = MatMul(r, w2)
        s = Relu(k)
        m = MatMul(s, w3)
        y = If (c) <then_branch = g1 () => (float[1, 8] t) { t = Identity(m) }, else_branch = g2 () => (float[1, 8] e) { e = Neg(m) }>
    }"""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    model.graph.initializer.extend(onnx.numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), n) for n in ("w1", "w2", "w3"))
    feeds = [{"x": rng.normal(size=(1, 8)).astype(np.float32), "c": np.array(True)} for _ in range(12)]
    trials, probes = _recorded(monkeypatch)
    found = auto_ranges(model, plan_qdq(model), feeds, budget=2.5)
    assert not probes[0].suffixes and trials and all(cost == 1.0 for _, cost in trials)
    assert len(trials) <= 2 and found.spent == len(trials) and found.untried
    assert found.final_score >= max(found.uniform_scores.values())
