"""The bisect family of `pytest --model`: `--bisect` attaches a layerwise comparison to every failed
`target::accuracy[<name>]` item.

It adds no items. Its session hook wraps pytest_runtest_makereport: when an accuracy item of an
ONNX Runtime target fails, the target's artifact is compared tensor by tensor with the reference
model (the model, or for a model with Q/DQ nodes its float counterpart) by bisect.layerwise. The
report gains a section (the first divergent tensor and node, the top error amplifiers), and the
item's figures gain "bisect" (LayerwiseReport.to_dict()), which the JSON report carries.
`--bisect-plot DIR` also writes one HTML plot per failed item, never over an existing file.

Both models run with ONNX Runtime's graph optimizations off, so every tensor exists as written; a
failure that only the optimized run shows is named as such. TensorRT engines are not bisected here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from .. import validate
from ..bisection.run import NotBisectable, bisect_figures, layerwise_for, section_text, unoptimized_outputs_fail
from ..context import RunOptions
from ..errors import CheckError, ConfigError
from ..fileio import unique_path
from ..report import PROPERTY_KEY
from .options import BISECT_FEEDS, typed, value
from .stash import STATE

SETTINGS_KEY = "bisect_settings"
DEFAULT_FEEDS = BISECT_FEEDS


@dataclasses.dataclass(frozen=True, kw_only=True)
class BisectSettings:
    """`enabled`: bisect failed accuracy items. Defaults to False. `plot_dir`: where the HTML plots
    go. Defaults to None (no plot). `min_sqnr_db`: per-tensor SQNR floor. Defaults to 20 dB.
    `max_feeds`: feeds compared (every tensor of both models is held per feed). Defaults to 4."""

    enabled: bool = False
    plot_dir: Path | None = None
    min_sqnr_db: float = 20.0
    max_feeds: int = DEFAULT_FEEDS


def read_options(config) -> dict:
    plot = value(config, "bisect_plot")
    feeds = value(config, "bisect_feeds")
    if feeds is not None and feeds < 1:
        raise ConfigError(f"--bisect-feeds {feeds} must be at least 1")
    if plot and Path(plot).exists() and not Path(plot).is_dir():
        raise ConfigError(f"--bisect-plot '{plot}' is a file; pass a folder for the plots")
    floor = validate.number(value(config, "bisect_min_sqnr"), "--bisect-min-sqnr", example="20")
    if not (value(config, "bisect") or plot):
        validate.idle_without(typed(config, ("--bisect-min-sqnr", "--bisect-feeds")), "--bisect", "no layerwise comparison is made")
    settings = BisectSettings(
        enabled=bool(value(config, "bisect") or plot), plot_dir=validate.resolved(plot, "--bisect-plot") if plot else None,
        min_sqnr_db=BisectSettings.min_sqnr_db if floor is None else float(floor), max_feeds=feeds or DEFAULT_FEEDS,
    )
    return {SETTINGS_KEY: settings}


def checks(options: RunOptions) -> list:
    """No items of its own: the family only annotates failed accuracy items."""
    return []


def session_plugin(config, options: RunOptions):
    settings = options.extra.get(SETTINGS_KEY, BisectSettings())
    return BisectHook(settings) if settings.enabled else None


# ---------------------------------------------------------------- the pytest hook


def accuracy_target(item) -> str | None:
    """The target name of a `target::accuracy[<name>]` item, else None."""
    check = getattr(item, "check", None)
    return check.parameter if check is not None and check.stem == "target" and check.name == "accuracy" else None


class BisectHook:
    """Annotates each failed accuracy item's report before pytest logs it (so the JSON report, built
    from the logged reports, carries the figures), and lists the findings after the run."""

    def __init__(self, settings: BisectSettings):
        self.settings = settings
        self.findings: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        name = accuracy_target(item)
        if name is not None and report.when == "call" and report.failed:
            text, figures = self._bisect(item, name)
            report.sections.append((f"onnx2trt_check bisect: {name}", text))
            _add_figures(report, figures)
        return report

    def _bisect(self, item, name: str) -> tuple[str, dict]:
        from ..targets import get_target

        try:
            ctx = item.config.stash[STATE].context_for(item.path)
            target = get_target(name)
            report, label, artifact = layerwise_for(ctx, target, min_sqnr_db=self.settings.min_sqnr_db, max_feeds=self.settings.max_feeds)
            loose = report.first_divergent is None and target.engine != "tensorrt" and unoptimized_outputs_fail(ctx, target, artifact)
        except NotBisectable as exc:
            return str(exc), {"target": name, "skipped": str(exc)}
        except Exception as exc:  # ORT or a graph the comparison cannot take: a line in the report, not an internal error
            return f"layerwise comparison failed: {type(exc).__name__}: {exc}", {"target": name, "error": f"{type(exc).__name__}: {exc}"}
        try:
            plot, unwritten = self._plot(report, ctx.path.stem, name), ""
        except (OSError, CheckError) as exc:  # a full disk: the comparison is still worth its lines
            plot, unwritten = None, f"\nthe plot was not written: {exc}"
        text = section_text(name, report, label, plot, engine=target.engine, unoptimized_failed=loose)
        return text + unwritten, bisect_figures(name, report, label, artifact, plot)

    def _plot(self, report, stem: str, name: str) -> Path | None:
        from ..bisection.plot import layerwise_plot_html

        if self.settings.plot_dir is None:
            return None
        path = unique_path(self.settings.plot_dir, f"{stem}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.layerwise", ".html")
        try:
            layerwise_plot_html(report, path, title=f"Layerwise error: {stem} on {name}")
        except BaseException:
            path.unlink(missing_ok=True)  # its name was claimed with an empty file (unique_path)
            raise
        return path

    def pytest_runtest_logreport(self, report) -> None:
        """From the logged report, so xdist workers' findings reach the controller."""
        if report.when != "call":
            return  # setup and teardown reports carry the same user_properties
        for key, entry in getattr(report, "user_properties", ()):
            bisect = entry.get("figures", {}).get("bisect") if key == PROPERTY_KEY else None
            if bisect:
                self.findings.append(f"{report.nodeid}: {finding_line(bisect)}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.findings:
            terminalreporter.write_sep("=", "onnx2trt_check bisect")
            for line in self.findings:
                terminalreporter.write_line(line)


def finding_line(figures: dict) -> str:
    """One line per bisected item: the first divergent node, or why there is none."""
    if "skipped" in figures or "error" in figures:
        return figures.get("skipped") or figures["error"]
    first = figures.get("first_divergent")
    if not first:
        return "no tensor beyond tolerance with graph optimizations off (the optimized run differs)"
    nodes = ", ".join(first["nodes"]) or "(graph input)"
    return f"first divergent tensor '{first['tensor']}' at node(s) {nodes}, SQNR {float(first['sqnr_db']):.2f} dB"


def _add_figures(report, figures: dict) -> None:
    """The entry dicts are shared by the item's and the report's user_properties: update in place."""
    for key, entry in report.user_properties:
        if key == PROPERTY_KEY:
            entry["figures"] = {**entry.get("figures", {}), "bisect": figures}
