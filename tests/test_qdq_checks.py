"""The qdq family of `pytest --model`: item ids, an error rule fails with its fix, warnings pass and
are summarized, the optimizer item fails naming a rewrite that broke its bound, float models get no
qdq item."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from qdq_strategies import VIOLATIONS, RulesSpec, rules_graph

from onnx2trt_check.pytest_plugin import qdq as qdq_checks
from onnx2trt_check.quant import qdq_optimize, qdq_rules

MODELS = Path(__file__).resolve().parents[1] / "models"
RULE_ITEM_IDS = [f"q.onnx::qdq::placement[{rule_id}]" for rule_id in (
    "QDQ001-zero-point", "QDQ002-scale", "QDQ003-weight-axis", "QDQ004-int32-bias", "QDQ005-unquantized-input",
    "QDQ006-conv-add-qdq", "QDQ007-residual-unquantized", "QDQ008-concat-scales", "QDQ009-passthrough-scale",
    "QDQ010-dangling-q", "QDQ011-output-qdq")]


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


@pytest.fixture(scope="module")
def static_qdq_model(tmp_path_factory) -> Path:
    """convbn_classifier quantized by onnxruntime's quantize_static: QDQ, symmetric int8, float bias."""
    calibration = np.load(MODELS / "convbn_classifier.calib.npz")["input"][:4]
    path = tmp_path_factory.mktemp("static") / "q.onnx"
    quantize_static(str(MODELS / "convbn_classifier.onnx"), str(path), _Feeds([{"input": c} for c in calibration]),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    return path


def planted(pytester, violation: str) -> None:
    onnx.save(rules_graph(RulesSpec(3, (0.02, 0.03, 0.05, 0.1), 0, violation, 0.0)), pytester.path / "q.onnx")


def run_qdq(pytester, *args):
    return pytester.runpytest_inprocess("--model", "q.onnx", "-k", "qdq", "-p", "no:randomly", *args)


# ---------------------------------------------------------------- the rule id table


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
def test_rule_ids_are_what_each_rule_reports(violation):
    graph = ir.from_proto(rules_graph(RulesSpec(3, (0.02, 0.03, 0.05, 0.1), 0, violation, 0.0))).graph
    reported = {qdq_checks.RULE_IDS[rule]: {f.rule for f in rule(graph)} for rule in qdq_rules.RULES}
    assert all(found <= {rule_id} for rule_id, found in reported.items()), reported
    assert set().union(*reported.values()) == VIOLATIONS[violation]


def test_every_rule_has_one_item_id():
    assert list(qdq_checks.RULE_IDS) == list(qdq_rules.RULES)
    assert len(set(qdq_checks.RULE_IDS.values())) == len(qdq_rules.RULES)


findings = st.lists(st.builds(qdq_rules.Finding, rule=st.just("R"), severity=st.sampled_from(["error", "warning"]),
                              nodes=st.tuples(st.text(min_size=1, max_size=3)), message=st.just("m"), fix=st.just("f")), max_size=6)


@given(findings)
def test_placement_figures_count_each_severity(found):
    figures = qdq_checks.placement_figures(found)
    errors = [f for f in found if f.severity == "error"]
    assert (figures["errors"], figures["warnings"]) == (len(errors), len(found) - len(errors))
    assert [f["nodes"] for f in figures["findings"]] == [f.nodes for f in found]
    assert ("summary" in figures) == bool(found)


# ---------------------------------------------------------------- pytest --model


def test_item_ids_and_no_qdq_items_for_a_float_model(pytester, static_qdq_model):
    shutil.copy(static_qdq_model, pytester.path / "q.onnx")
    shutil.copy(MODELS / "convbn_classifier.onnx", pytester.path / "float.onnx")
    result = pytester.runpytest_inprocess("--model", "q.onnx", "--model", "float.onnx", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::qdq::" in line]
    assert ids == RULE_ITEM_IDS + ["q.onnx::qdq::equivalence[optimize]"]
    assert any(line.startswith("float.onnx::") for line in result.outlines)


def test_quantize_static_model_passes_and_its_warning_is_summarized_with_the_fix(pytester, static_qdq_model):
    shutil.copy(static_qdq_model, pytester.path / "q.onnx")
    shutil.copy(MODELS / "convbn_classifier.npz", pytester.path / "q.npz")
    result = run_qdq(pytester, "--inputs", "q.npz", "--report-json", "r.json")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines([
        "*Q/DQ placement warnings*",
        "q.onnx: 1 warning(s)*",
        "  QDQ011-output-qdq at *DequantizeLinear: graph output 'logits' is produced by DequantizeLinear",
        "      fix: remove the Q/DQ on the graph output*",
        "*qdq[[]QDQ011-output-qdq[]]*PASSED*1 warning",
    ])
    families = json.loads((pytester.path / "r.json").read_text())["models"]["q.onnx"]["families"]
    optimize = families["qdq[optimize]"]["checks"]["equivalence"]["figures"]
    assert optimize["rewrites"] == 0 and optimize["findings_before"] == optimize["findings_after"] == {"QDQ011-output-qdq": 1}


def test_an_error_rule_fails_with_nodes_and_fix_and_the_others_pass(pytester):
    planted(pytester, "int32_bias")
    result = run_qdq(pytester)
    result.assert_outcomes(passed=11, failed=1)
    result.stdout.fnmatch_lines([
        "*1 Q/DQ placement error(s) of QDQ004-int32-bias: TensorRT rejects the model",
        "ERROR   QDQ004-int32-bias at b1_dq*: int32 DequantizeLinear (a quantized bias)",
        "        fix: keep the bias in float (onnxruntime: extra_options QuantizeBias=False)",
        "FAILED q.onnx::qdq::placement[[]QDQ004-int32-bias[]]*",
    ])


def test_optimizer_item_reports_rewrites_and_findings_before_and_after(pytester):
    planted(pytester, "conv_add_qdq")
    result = run_qdq(pytester, "--report-json", "r.json")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["*QDQ006-conv-add-qdq at conv2, conv2_q, conv2_dq, add*",
                                 "*optimize_qdq: 1 rewrite(s); findings 1 -> 0 (write it with: onnx2trt-check qdq optimize q.onnx*"])
    figures = json.loads((pytester.path / "r.json").read_text())["models"]["q.onnx"]["families"]["qdq[optimize]"]["checks"]["equivalence"]["figures"]
    assert figures["rewrites"] == 1 and figures["by_rewrite"]["move_qdq_to_residual"]["sites"] == 1
    measured = figures["by_rewrite"]["move_qdq_to_residual"]
    assert 0 < measured["max_abs_change"] <= measured["max_bound"] * (1 + 1e-6)
    assert figures["findings_before"] == {"QDQ006-conv-add-qdq": 1} and figures["findings_after"] == {}
    assert figures["outputs"]["y"]["max_abs"] > 0


def test_a_rewrite_that_broke_its_bound_is_undone_and_named_without_failing_the_model(pytester, monkeypatch):
    """The optimizer's safety net: the rewrite is not in the model it would write, so the model is
    not judged by it; the summary names it (a bound that does not hold is the optimizer's bug)."""
    monkeypatch.setattr(qdq_optimize, "requantize_bound", lambda s_old, s_new: lambda x: 0.0)
    planted(pytester, "concat_scales")
    result = run_qdq(pytester)
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["q.onnx: optimize_qdq undid align_concat_scales at concat, *: change * exceeds its bound 0",
                                 "*qdq[[]optimize[]] * PASSED *rewrite(s) undone: their change exceeded the bound the optimizer states*"])


def test_optimizer_item_fails_when_outputs_move_beyond_the_tolerance(pytester):
    planted(pytester, "conv_add_qdq")
    result = run_qdq(pytester, "--min-sqnr", "300")
    result.assert_outcomes(passed=11, failed=1)
    result.stdout.fnmatch_lines(["*the Q/DQ-optimized model differs from the model before it in 1 of 1 output(s)*"])
