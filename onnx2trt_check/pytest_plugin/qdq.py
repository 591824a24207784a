"""The Q/DQ family of `pytest --model`: TensorRT's placement rules and the verified Q/DQ optimizer,
for models that already hold Q/DQ nodes (QAT exports, quantize_static, our quantizer's output).

Items, for a model with Q/DQ nodes only (a model without them gets no `qdq` item at all: the session
plugin drops the family at collection, so a float model's summary is not padded with skips):
  qdq[<rule id>]::placement   one per rule of qdq_rules.RULES. An "error" finding fails (TensorRT
                              rejects the model); "warning" findings pass, are in the figures, and
                              are listed once per model in the "Q/DQ placement warnings" summary.
  qdq::equivalence[optimize]  optimize_qdq on the run's feeds: every rewrite verified against its
                              own bound by the optimizer (a rewrite that broke it fails the item,
                              named), then the optimized model against the model before it under
                              the int8 tolerance profile.
Running the quantized model against its float counterpart is the `ort-int8` target's job, not this
family's.
"""

from __future__ import annotations

import dataclasses
import weakref

import onnx_ir as ir
import pytest

from ..compare import compare_output, format_stats
from ..context import ModelContext, RunOptions
from ..errors import CheckFailed, CheckSkipped
from ..quant import qdq_rules
from ..quant.float_counterpart import has_qdq
from ..quant.qdq_optimize import optimize_qdq
from ..report import PROPERTY_KEY
from ..runtime import create_session, run_feeds
from .core import Check
from .stash import STATE

FAMILY_PREFIX = "qdq["
# Rule function -> its stable id (the `rule` of its findings): the item ids. Kept here because the
# rule functions carry no id attribute; tests/test_qdq_checks.py checks it against what every rule reports.
RULE_IDS = {
    qdq_rules.check_zero_point: "QDQ001-zero-point",
    qdq_rules.check_scale: "QDQ002-scale",
    qdq_rules.check_weight_axis: "QDQ003-weight-axis",
    qdq_rules.check_int32_bias: "QDQ004-int32-bias",
    qdq_rules.check_inputs_quantized: "QDQ005-unquantized-input",
    qdq_rules.check_conv_add_fusion: "QDQ006-conv-add-qdq",
    qdq_rules.check_residual_quantized: "QDQ007-residual-unquantized",
    qdq_rules.check_concat_scales: "QDQ008-concat-scales",
    qdq_rules.check_passthrough_scale: "QDQ009-passthrough-scale",
    qdq_rules.check_dangling_q: "QDQ010-dangling-q",
    qdq_rules.check_graph_outputs: "QDQ011-output-qdq",
}
NO_QDQ_REASON = "the model holds no Q/DQ nodes"


def read_options(config) -> dict:
    return {}


def checks(options: RunOptions) -> list[Check]:
    """One placement item per rule, in RULES order, then the optimizer's equivalence item."""
    found = [Check(f"qdq[{RULE_IDS[rule]}]", "placement", placement_check(rule)) for rule in qdq_rules.RULES]
    return found + [Check("qdq[optimize]", "equivalence", check_optimize)]


# ---------------------------------------------------------------- per-model state


@dataclasses.dataclass
class _Validation:
    """The findings of every rule, and the onnx-ir model they were read from until the optimizer
    takes it (so the model is converted once for both)."""

    by_rule: dict
    ir_model: ir.Model | None


_PER_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # released with the context


def _validation(ctx: ModelContext) -> _Validation:
    if ctx not in _PER_MODEL:
        if not has_qdq(ctx.loaded.proto):
            raise CheckSkipped(NO_QDQ_REASON)
        ir_model = ir.from_proto(ctx.loaded.proto)  # read-only here; onnx-ir never writes the proto
        findings = qdq_rules.validate_qdq(ctx.loaded.proto, ir_model=ir_model)
        by_rule = {rule_id: [f for f in findings if f.rule == rule_id] for rule_id in RULE_IDS.values()}
        _PER_MODEL[ctx] = _Validation(by_rule, ir_model)
    return _PER_MODEL[ctx]


def _take_ir_model(ctx: ModelContext) -> ir.Model | None:
    """The shared onnx-ir model, handed out once: the optimizer edits it in place."""
    validation = _validation(ctx)
    ir_model, validation.ir_model = validation.ir_model, None
    return ir_model


# ---------------------------------------------------------------- placement items


def placement_check(rule):
    rule_id = RULE_IDS[rule]

    def check(ctx: ModelContext) -> dict:
        __tracebackhide__ = True
        findings = _validation(ctx).by_rule[rule_id]
        figures = placement_figures(findings)
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            header = f"{len(errors)} Q/DQ placement error(s) of {rule_id}: TensorRT rejects the model"
            raise CheckFailed(f"{header}\n{qdq_rules.format_findings(errors)}", figures)
        return figures

    return check


def placement_figures(findings: list) -> dict:
    """Counts, a summary line when something was found, and every finding (nodes, message, fix)."""
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    figures = {"errors": errors, "warnings": warnings, "findings": [dataclasses.asdict(f) for f in findings]}
    if findings:
        figures["summary"] = ", ".join(part for part in (_count(errors, "error"), _count(warnings, "warning")) if part)
    return figures


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'s' if number != 1 else ''}" if number else ""


# ---------------------------------------------------------------- optimizer item


def check_optimize(ctx: ModelContext) -> dict:
    __tracebackhide__ = True
    before = [f for findings in _validation(ctx).by_rule.values() for f in findings]
    result = optimize_qdq(ctx.loaded.proto, ctx.feeds, ir_model=_take_ir_model(ctx))
    after = qdq_rules.validate_qdq(result.model) if result.modified else before
    figures = optimize_figures(result, before, after)
    undone = [s for s in result.report.skips if " undone: " in s.reason]
    if undone:  # the optimizer's own safety net: not in the model it writes, so no verdict on it
        figures["undone"] = [f"{s.reason.split(' undone: ')[0]} at {', '.join(s.nodes)}: {s.reason.split(' undone: ')[1]}" for s in undone]
        figures["summary"] += f"; {len(undone)} rewrite(s) undone: their change exceeded the bound the optimizer states"
    new_errors = _new_errors(before, after)
    if new_errors:
        raise CheckFailed(f"optimize_qdq introduced Q/DQ placement errors:\n{qdq_rules.format_findings(new_errors)}", figures)
    if result.modified:
        figures["outputs"] = _compare_with_before(ctx, result.model, figures)
    return figures


def optimize_figures(result, before: list, after: list) -> dict:
    """Rewrites done (count, per rewrite: sites, largest measured change and bound), findings
    before and after by rule, and a summary line."""
    rewrites = {name: value for name, value in result.report.figures.items() if isinstance(value, dict)}
    figures = {
        "engine": "onnxruntime",
        "rewrites": len(result.report.matches),
        "by_rewrite": rewrites,
        "rewrite_details": [f"{', '.join(m.nodes)}: {m.detail}" for m in result.report.matches],
        "findings_before": _by_rule(before),
        "findings_after": _by_rule(after),
        "model_outputs_max_abs_change": result.report.figures.get("model_outputs_max_abs_change"),
    }
    figures["summary"] = f"{figures['rewrites']} rewrite(s); findings {len(before)} -> {len(after)}"
    return figures


def _by_rule(findings: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    return counts


def _new_errors(before: list, after: list) -> list:
    seen = {(f.rule, f.nodes) for f in before}
    return [f for f in after if f.severity == "error" and (f.rule, f.nodes) not in seen]


def _compare_with_before(ctx: ModelContext, optimized, figures: dict) -> dict:
    """The optimized model against the model before it (the reference run: ORT, graph as written),
    every output under the int8 tolerance profile."""
    outputs = run_feeds(create_session(optimized, optimized=False), ctx.feeds)
    results = []
    for name in ctx.reference.names:
        tolerance = ctx.options.tolerances.for_output(name, "int8")
        results.append((compare_output(name, ctx.reference.per_output(name), [o[name] for o in outputs], tolerance, ctx.output_layouts.get(name)),
                        tolerance))
    compared = {stats.name: stats.figures() for stats, _ in results}
    failed = [(s, t) for s, t in results if not s.passed]
    if failed:
        header = f"the Q/DQ-optimized model differs from the model before it in {len(failed)} of {len(results)} output(s)"
        raise CheckFailed("\n".join([header] + [format_stats(s, t) for s, t in failed]), figures | {"outputs": compared})
    return compared


# ---------------------------------------------------------------- collection and summary


def session_plugin(config, options: RunOptions):
    return QDQSession()


class QDQSession:
    """pytest hooks: drop the qdq family of models without Q/DQ nodes at collection, gather the
    placement warnings (from every xdist worker's reports) and list them once per model."""

    def __init__(self):
        self.warnings: dict[str, list[dict]] = {}
        self.optimized: dict[str, dict] = {}
        self._has_qdq: dict = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector):
        report = yield
        if report.result and _is_model_file(collector) and not self._model_has_qdq(collector):
            report.result = [node for node in report.result if not node.name.startswith(FAMILY_PREFIX)]
        return report

    def _model_has_qdq(self, collector) -> bool:
        path = collector.path
        if path in collector.config.stash[STATE].refused:
            return True  # its one item is the reason it cannot be checked: nothing to drop
        if path not in self._has_qdq:
            # The run's cached context: the model pytest_configure loaded last is not loaded again.
            self._has_qdq[path] = has_qdq(collector.config.stash[STATE].context_for(path).loaded.proto)
        return self._has_qdq[path]

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        for key, entry in report.user_properties:
            if key != PROPERTY_KEY or not entry["family"].startswith(FAMILY_PREFIX):
                continue
            if entry["name"] == "placement":
                found = [f for f in entry["figures"].get("findings", []) if f["severity"] == "warning"]
                self.warnings.setdefault(entry["model"], []).extend(found)
            elif entry["figures"]:
                self.optimized[entry["model"]] = entry["figures"]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        lines = warning_lines(self.warnings, self.optimized)
        if lines:
            terminalreporter.write_sep("=", "onnx2trt_check Q/DQ placement warnings")
            for line in lines:
                terminalreporter.write_line(line)


def _is_model_file(collector) -> bool:
    """A model's collector (state.ModelFile), told by the run's model paths: state.py imports the
    family registry, so this family does not import it."""
    return isinstance(collector, pytest.File) and collector.path in collector.config.stash[STATE].model_paths


def warning_lines(warnings: dict[str, list[dict]], optimized: dict[str, dict]) -> list[str]:
    """Per model with warnings: each warning (rule, nodes, what, fix), then what optimize_qdq did;
    and the rewrites optimize_qdq undid because their change exceeded the bound it states."""
    lines = []
    for model in sorted(set(warnings) | set(optimized)):
        found = sorted(warnings.get(model, []), key=lambda f: f["rule"])
        undone = optimized.get(model, {}).get("undone", [])
        if not found and not undone:
            continue
        if found:
            lines.append(f"{model}: {len(found)} warning(s): builds, but slower or less accurate than it could")
        for f in found:
            lines.append(f"  {f['rule']} at {', '.join(f['nodes'])}: {f['message']}")
            lines.append(f"      fix: {f['fix']}")
        if found and optimized.get(model, {}).get("rewrites"):
            lines.append(f"  optimize_qdq: {optimized[model]['summary']} "
                         f"(write it with: onnx2trt-check qdq optimize {model} -o OUT.onnx)")
        lines += [f"{model}: optimize_qdq undid {text}" for text in undone]
    return lines
