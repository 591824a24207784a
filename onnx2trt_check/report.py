"""The run's results: one record per check, grouped into the terminal summary and the JSON report.

Records are built from pytest reports (which carry the check's figures in `user_properties`), so
under pytest-xdist the controller sees every worker's results.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Iterable
from pathlib import Path

from . import __version__
from .compare import accepts_zero_text
from .errors import ConfigError
from .fileio import atomic_write_text

SCHEMA_VERSION = 1
REPORT_TOOL = "onnx2trt_check"
PROPERTY_KEY = "onnx2trt_check"


@dataclasses.dataclass
class CheckRecord:
    model: str
    family: str
    name: str
    outcome: str  # passed | failed | skipped | error (the check crashed, or setup/teardown/collection failed)
    figures: dict
    message: str = ""
    order: int = 0  # position of the check in checks_for(): xdist delivers results in any order


@dataclasses.dataclass
class ModelInfo:
    path: str
    sha256: str
    notes: list[str]


OUTCOMES = ("passed", "failed", "error", "skipped")


def verdict(outcomes: Iterable[str]) -> str:
    outcomes = set(outcomes)
    for word in ("failed", "error", "passed"):
        if word in outcomes:
            return word
    return "skipped"


def group(records: list[CheckRecord], model_order: list[str] = ()) -> dict[str, dict[str, list[CheckRecord]]]:
    """model -> family -> records, models in `model_order` (others after), checks in check order."""
    rank = {model: index for index, model in enumerate(model_order)}
    grouped: dict[str, dict[str, list[CheckRecord]]] = {}
    for record in sorted(records, key=lambda r: (rank.get(r.model, len(rank)), r.order)):
        grouped.setdefault(record.model, {}).setdefault(record.family, []).append(record)
    return grouped


def key_figures(family: str, records: list[CheckRecord]) -> str:
    """The few numbers that matter for one family, for a one-line summary row."""
    figures = {r.name: r.figures for r in records}
    if family == "structure" and "checker" in figures:
        versions = figures.get("versions", {})
        opset = versions.get("opsets", {}).get("ai.onnx", "?")
        return f"{figures['checker'].get('nodes', '?')} nodes, opset {opset}, IR {versions.get('ir_version', '?')}"
    if family == "reference" and "run" in figures:
        run = figures["run"]
        text = f"{run.get('feeds', '?')} feed(s), {run.get('seconds', 0):.3g} s"
        if constant := run.get("constant_outputs"):
            every = set(constant) >= set(run.get("outputs") or constant)
            text += (f"; {'every output' if every else 'output(s)'} ({', '.join(map(repr, constant))}) {'is' if every else 'are'} the same "
                     f"on all {run.get('feeds', '?')} feeds, which differ: no check of this run can see an error upstream of "
                     f"{'it' if every else 'them alone'}; give data on which {'it varies' if every else 'they vary'}")
        if run.get("one_feed"):
            from .liveness import ONE_FEED_NOTE

            text += f"; {ONE_FEED_NOTE}"
        return text
    if "outputs" in figures.get("accuracy", {}):  # target[...], calibration[...], any accuracy comparison
        return accuracy_figures(figures["accuracy"])
    first = next(iter(figures.values()), {})
    if isinstance(first, dict) and "nodes_before" in first and "nodes_after" in first:  # transforms
        return f"{first['nodes_before']} -> {first['nodes_after']} nodes"
    # Other families may name their key figure "summary" (a short string) in any check.
    return "; ".join(str(f["summary"]) for f in figures.values() if isinstance(f, dict) and f.get("summary"))


def accuracy_figures(figures: dict) -> str:
    outputs = figures.get("outputs", {})
    if not outputs:
        return ""
    # Labels and indices are judged by agreement: the SQNR of class numbers would read as a failure.
    valued = [o for o in outputs.values() if not o.get("discrete")]
    top1 = [o["top1"] for o in outputs.values() if o.get("top1") is not None]
    text = f"[{figures.get('engine', '?')}]"
    if valued:
        sqnr = _worst(min, (_as_float(o.get("sqnr_db")) for o in valued))
        max_abs = _worst(max, (_as_float(o.get("max_abs")) for o in valued))
        text += f" max abs {max_abs:.3g}, min SQNR {sqnr:.1f} dB" + ("," if top1 else "")
    text += f" top-1 {min(top1):.1%}" if top1 else ""
    near_ties = sum(o.get("near_ties") or 0 for o in outputs.values())
    text += f" ({near_ties} near-tie row(s) not counted against the floor)" if near_ties else ""
    text += f"; own Q/DQ in {', '.join(figures['quantized_as'])}, not int8" if figures.get("quantized_as") else ""
    reshaped = [name for name, o in outputs.items() if any("shape" in p and "differs" in p for p in o.get("problems", []))]
    text += f"; shape differs: {', '.join(repr(n) for n in reshaped)}" if reshaped else ""
    vacuous = accepts_zero_text([name for name, o in outputs.items() if o.get("accepts_zero")])
    text += f"; {figures['inputs_warning']}" if figures.get("inputs_warning") else ""
    return text + (f"; {vacuous}" if vacuous else "")


def _worst(pick, values) -> float:
    """min or max over `values`, NaN when any is NaN (an output compared by no figure, e.g. a
    shape mismatch): Python's min/max would drop it and print the others as the whole result."""
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summary_lines(records: list[CheckRecord], models: dict[str, ModelInfo]) -> list[str]:
    lines = []
    width = max((len(r.family) for r in records), default=0) + 2
    for model, families in group(records, list(models)).items():
        lines.append(model)
        for note in models.get(model, ModelInfo(model, "", [])).notes:
            lines.append(f"    note: {note}")
        for family, family_records in families.items():
            counts = ", ".join(f"{n} {o}" for o, n in count_outcomes(family_records).items() if n)
            lines.append(f"  {family:<{width}}{verdict(r.outcome for r in family_records).upper():<8} {counts:<22} {key_figures(family, family_records)}")
        lines.extend(_skip_reasons(families))
        lines.extend(_errors(families))
    return lines


def count_outcomes(records: Iterable[CheckRecord]) -> dict[str, int]:
    """How many records of each outcome, in OUTCOMES order: the counts pytest prints."""
    outcomes = [r.outcome for r in records]
    return {outcome: outcomes.count(outcome) for outcome in OUTCOMES}


def _errors(families: dict[str, list[CheckRecord]]) -> list[str]:
    """Each check that could not run, with its exception: it says nothing about the model."""
    return [f"    error in {r.family}::{r.name}: {r.message}" for records in families.values() for r in records if r.outcome == "error"]


def _skip_reasons(families: dict[str, list[CheckRecord]]) -> list[str]:
    """Each distinct skip reason once, rather than once per item."""
    reasons = dict.fromkeys(r.message for records in families.values() for r in records if r.outcome == "skipped" and r.message)
    return [f"    skipped: {reason}" for reason in reasons]


def report_document(records: list[CheckRecord], models: dict[str, ModelInfo], exit_status: int, *, notes: Iterable[str] = ()) -> dict:
    document = {
        "schema_version": SCHEMA_VERSION,
        "tool": REPORT_TOOL,
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "exit_status": exit_status,
        "counts": count_outcomes(records),
        "notes": list(notes),
        "models": {},
    }
    for model, families in group(records, list(models)).items():
        info = models.get(model, ModelInfo(model, "", []))
        document["models"][model] = {
            "sha256": info.sha256,
            "notes": info.notes,
            "families": {family: _family_entry(rs) for family, rs in families.items()},
        }
    return document


def _family_entry(records: list[CheckRecord]) -> dict:
    """One entry per check; a check with more than one record (it passed, then its teardown failed)
    keeps its first and lists the others' outcomes and messages under "also"."""
    checks: dict[str, dict] = {}
    for r in records:
        if r.name in checks:
            checks[r.name].setdefault("also", []).append({"outcome": r.outcome, "message": r.message})
        else:
            checks[r.name] = {"outcome": r.outcome, "message": r.message, "figures": r.figures}
    return {"verdict": verdict(r.outcome for r in records), "checks": checks}


def check_report_path(path: Path) -> None:
    """Refuse to overwrite a file that is not one of our reports (a report is replaced each run)."""
    if not path.exists():
        return
    try:
        is_ours = json.loads(path.read_text(encoding="utf-8")).get("tool") == REPORT_TOOL
    except (OSError, ValueError, AttributeError):
        is_ours = False
    if not is_ours:
        raise ConfigError(f"--report-json '{path}' exists and is not an onnx2trt_check report; choose another path or move that file")


def write_report(path: Path, document: dict) -> None:
    atomic_write_text(path, json.dumps(json_safe(document), indent=2, allow_nan=False, default=str) + "\n")


def json_safe(value):
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan" instead of failing."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
