"""The session plugin of the latency and baseline family (baselines.py): it collects the family's
results (worker results arrive on the xdist controller), writes the updated baselines at session
end, once, and prints the decision table. A family of its own in the registry (families.py), with
no options and no items, like baseline_coverage."""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import baseline as store
from ..bench import LatencySamples
from ..context import RunOptions
from ..environment import tool_versions
from ..errors import ConfigError
from ..report import PROPERTY_KEY
from .baselines import Settings, decision_row, quiet_load, settings_of
from .stash import STATE


def read_options(config) -> dict:
    return {}  # this family reads the baseline family's settings


def checks(options: RunOptions) -> list:
    return []


def session_plugin(config: pytest.Config, options: RunOptions):
    settings = settings_of(options)
    if settings.baseline_dir is None and not settings.latency:
        return None
    return BaselineSession(settings, is_worker=hasattr(config, "workerinput"))


def merged_baseline(existing: store.Baseline | None, parts: list[dict], versions: dict) -> store.Baseline:
    """The file's new content: what this run measured replaces the block it measured (the whole
    accuracy block, or the whole latency block); a block it did not measure is kept, unless it was
    measured on another model (gate13: an update with `-k latency` after the model changed filed the
    old model's accuracy under the new model's sha256, and the next gate no longer said the model had
    changed), or on other input data (review14: `-k latency` on other data filed the old data's accuracy
    under the new data's fingerprint, build_options.data, and the gate on the new data compared them).
    Dropped, that block's gate fails "missing" with the command that records it."""
    first = parts[0]
    kept = existing if existing is not None and existing.model_sha256 == first["model_sha256"] and _same_data(existing, first) else None
    accuracy = next((p["accuracy"] for p in parts if "accuracy" in p), kept.accuracy if kept else {})
    latency = next((LatencySamples(tuple(p["latency"]["data"]), warmup=p["latency"]["warmup"]) for p in parts if "latency" in p), kept.latency if kept else None)
    return store.Baseline(
        model_name=first["model_name"], model_sha256=first["model_sha256"], target=first["target"], build_options=first["build_options"],
        environment=first["environment"], tool_versions=versions, accuracy=accuracy, latency=latency,
    )  # fmt: skip


def _same_data(existing: store.Baseline, part: dict) -> bool:
    """Whether the kept block was measured on this run's data (a baseline without the fingerprint: as before)."""
    recorded = existing.build_options.get("data")
    return recorded is None or recorded == part["build_options"].get("data")


class BaselineSession:
    """Collects this family's results (worker results arrive here on the xdist controller), writes
    updated baselines at session end and prints the decision table."""

    def __init__(self, settings: Settings, *, is_worker: bool):
        self.settings = settings
        self.is_worker = is_worker
        self.entries: list[tuple[str, dict]] = []
        self.written: list[tuple[Path, list[str]]] = []
        self.errors: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, entry in report.user_properties if report.when == "call" else ():
            if key == PROPERTY_KEY and entry["family"].startswith(("baseline[", "latency[")):
                self.entries.append((report.outcome, entry))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not self.settings.update:
            return  # under xdist only the controller writes
        if session.exitstatus == pytest.ExitCode.INTERRUPTED and self._updates():  # a partial update mixes two runs' figures
            self._not_written(session, self._updates(), "baselines not updated: the run was interrupted (Ctrl-C/SIGTERM); run the update again")
            return
        for path, parts in self._updates().items():
            try:
                written = store.write_baseline(self.settings.baseline_dir, merged_baseline(quiet_load(path), parts, tool_versions()), update=True)
                self.written.append((written, sorted(k for p in parts for k in ("accuracy", "latency") if k in p)))
            except (OSError, ConfigError) as exc:
                self._not_written(session, [path], f"could not write baseline {path}: {exc}")
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _not_written(self, session: pytest.Session, paths, why: str) -> None:
        """Files the items said were updated that were not written: their items' figures (this
        table's rows, the JSON report's checks) stop saying "baseline updated", and the run's notes
        (summary and JSON report) carry the reason, where a reader of the report had only the exit status."""
        self.errors.append(why)
        files = {str(path) for path in paths}
        state = session.config.stash.get(STATE, None)
        records = [record.figures for record in state.records] if state is not None else []
        for figures in [entry["figures"] for _, entry in self.entries] + records:
            if figures.get("update") and figures.get("file") in files:
                figures.update(verdict="not written", message=why)
        if state is not None:
            state.notes.append(why)

    def _updates(self) -> dict[Path, list[dict]]:
        updates: dict[Path, list[dict]] = {}
        for outcome, entry in self.entries:
            update = entry["figures"].get("update")
            if outcome == "passed" and update:
                updates.setdefault(Path(entry["figures"]["file"]), []).append(update)
        return updates

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker or not (self.entries or self.errors):
            return
        terminalreporter.write_sep("=", "onnx2trt_check latency and baselines")
        for line in self.summary_lines():
            terminalreporter.write_line(line)

    def summary_lines(self) -> list[str]:
        lines = []
        for outcome, entry in sorted(self.entries, key=lambda e: (e[1]["model"], e[1]["order"])):
            lines.extend(_entry_lines(outcome, entry))
        lines += [f"updated {path} ({', '.join(blocks)})" for path, blocks in self.written] + self.errors
        if self.settings.baseline_dir is not None and self.settings.baseline_dir.is_dir():
            used = {e["figures"][k] for _, e in self.entries for k in ("file", "expected_file") if k in e["figures"]}
            lines += [f"unused baseline (no test of this run used it): {path}" for path in store.find_unused(self.settings.baseline_dir, used)]
        return lines


def _entry_lines(outcome: str, entry: dict) -> list[str]:
    figures, head = entry["figures"], f"{entry['model']}::{entry['family']}::{entry['name']}"
    if entry["family"].startswith("latency["):
        if "median_ms" not in figures:
            return [f"{head}  {outcome.upper()}  {entry['message']}"]
        stats = ", ".join(f"{k[:-3]} {figures[k]:.4g}" for k in ("median_ms", "mean_ms", "stdev_ms", "p90_ms", "p99_ms", "min_ms"))
        return [f"{head}  [{figures.get('engine', '?')}] {stats} ms over {figures['rounds']} rounds"]
    verdict = figures.get("verdict", outcome)
    lines = [f"{head}  {verdict.upper()}  {figures.get('file', '')}" + ("" if figures or not entry["message"] else f"  {entry['message']}")]
    return lines + [f"    {decision_row(d)}" for d in figures.get("decisions", [])]
