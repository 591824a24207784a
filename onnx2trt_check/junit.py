"""An item's key figures as flat JUnit XML properties, so `--junitxml` carries them to CI dashboards.

pytest's junitxml writes every `user_properties` pair of a test as `<property name value>`; the
figures travel there as one nested dict (the record of report.py), which would be written as one
unreadable Python repr. `junit_properties` turns a record's figures into a few flat, named numbers:

  <output>.sqnr_db, <output>.cosine, <output>.max_abs, <output>.top1     accuracy comparisons
  latency.median_ms, latency.p99_ms                                      latency items
  baseline.<output>.<metric>.ratio (current / baseline), baseline.verdict baseline items
  task.<metric>, task.<metric>.drop                                     task metrics
plus `onnx2trt_check.message` (its first line) when the item has one. The outcome is JUnit's own
(failure, skipped, error elements).
"""

from __future__ import annotations

import math

ACCURACY_KEYS = ("sqnr_db", "cosine", "max_abs", "top1")
LATENCY_KEYS = ("median_ms", "p99_ms")


def junit_properties(record: dict) -> list[tuple[str, str]]:
    """Flat (name, value) pairs for one item's record (model, family, name, figures, message)."""
    figures = record.get("figures") or {}
    found = []
    if message := str(record.get("message") or "").strip():
        found.append(("onnx2trt_check.message", message.splitlines()[0]))
    found += _accuracy(figures.get("outputs"))
    found += [(f"latency.{key}", _number(figures[key])) for key in LATENCY_KEYS if _is_number(figures.get(key))]
    found += _baseline(figures)
    found += _task(record.get("family", ""), figures)
    return found


def _accuracy(outputs) -> list[tuple[str, str]]:
    if not isinstance(outputs, dict):
        return []
    return [(f"{name}.{key}", _number(stats[key])) for name, stats in outputs.items() if isinstance(stats, dict)
            for key in ACCURACY_KEYS if _is_number(stats.get(key))]


def _baseline(figures: dict) -> list[tuple[str, str]]:
    decisions = figures.get("decisions")
    if not isinstance(decisions, list):
        return []
    found = [(f"baseline.{d.get('output') or d.get('kind')}.{d['metric']}.ratio", _number(d["ratio"]))
             for d in decisions if isinstance(d, dict) and "metric" in d and _is_number(d.get("ratio"))]
    return found + ([("baseline.verdict", str(figures["verdict"]))] if "verdict" in figures else [])


def _task(family: str, figures: dict) -> list[tuple[str, str]]:
    """task[...] items: the task metric's named figures, and each one's drop from the reference."""
    if not family.startswith("task[") or not isinstance(figures.get("figures"), dict):
        return []
    found = [(f"task.{name}", _number(value)) for name, value in figures["figures"].items() if _is_number(value)]
    drops = figures.get("drop") if isinstance(figures.get("drop"), dict) else {}
    return found + [(f"task.{name}.drop", _number(value)) for name, value in drops.items() if _is_number(value)]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value) -> str:
    """Finite numbers as repr (round-trips), inf/nan spelled as JSON reports spell them."""
    return repr(float(value)) if math.isfinite(value) else str(float(value))
