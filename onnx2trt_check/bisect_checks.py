"""The bisect family of `pytest --model`: `--bisect` attaches a layerwise comparison to every failed
`target[<name>]::accuracy` item.

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
import os
import re
from pathlib import Path

import onnx
import pytest

from .checks import CheckFailed, CheckSkipped
from .context import ModelContext, RunOptions
from .errors import ConfigError
from .report import PROPERTY_KEY

SETTINGS_KEY = "bisect_settings"
DEFAULT_FEEDS = 4
TRT_NEEDED = (
    "layerwise comparison of TensorRT engines needs TensorRT and a CUDA device (marks every tensor as an engine output); "
    "elsewhere compare the engine's layers with Polygraphy: polygraphy run MODEL --trt --onnxrt --trt-outputs mark all --onnx-outputs mark all"
)
OPTIMIZED_ONLY = (
    "no tensor is beyond the layerwise tolerance with graph optimizations off: the difference comes from "
    "ONNX Runtime's optimized execution of the artifact (graph rewrites, fused kernels), not from its graph"
)
_ACCURACY_FAMILY = re.compile(r"target\[(?P<name>.+)\]")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BisectSettings:
    """`enabled`: bisect failed accuracy items. Defaults to False. `plot_dir`: where the HTML plots
    go. Defaults to None (no plot). `min_sqnr_db`: per-tensor SQNR floor. Defaults to 20 dB.
    `max_feeds`: feeds compared (every tensor of both models is held per feed). Defaults to 4."""

    enabled: bool = False
    plot_dir: Path | None = None
    min_sqnr_db: float = 20.0
    max_feeds: int = DEFAULT_FEEDS


def add_options(group) -> None:
    group.addoption("--bisect", action="store_true", help="for each failed target accuracy item, compare the target's ONNX artifact with the reference layer by layer and name the first divergent node")
    group.addoption("--bisect-plot", metavar="DIR", help="also write an HTML plot of the per-layer error per failed item into DIR (implies --bisect); an existing file is kept and the new one gets a numeric suffix")
    group.addoption("--bisect-min-sqnr", type=float, metavar="DB", help="SQNR floor per tensor of the layerwise comparison. Defaults to 20")
    group.addoption("--bisect-feeds", type=int, metavar="N", help=f"feeds the layerwise comparison uses (the first N). Defaults to {DEFAULT_FEEDS}")


def read_options(config) -> dict:
    plot = config.getoption("bisect_plot")
    feeds = config.getoption("bisect_feeds")
    if feeds is not None and feeds < 1:
        raise ConfigError(f"--bisect-feeds {feeds} must be at least 1")
    if plot and Path(plot).exists() and not Path(plot).is_dir():
        raise ConfigError(f"--bisect-plot '{plot}' is a file; pass a folder for the plots")
    floor = config.getoption("bisect_min_sqnr")
    settings = BisectSettings(
        enabled=bool(config.getoption("bisect") or plot), plot_dir=Path(plot).resolve() if plot else None,
        min_sqnr_db=BisectSettings.min_sqnr_db if floor is None else float(floor), max_feeds=feeds or DEFAULT_FEEDS,
    )
    return {SETTINGS_KEY: settings}


def checks(options: RunOptions) -> list:
    """No items of its own: the family only annotates failed accuracy items."""
    return []


def session_plugin(config, options: RunOptions):
    settings = options.extra.get(SETTINGS_KEY, BisectSettings())
    return BisectHook(settings) if settings.enabled else None


# ---------------------------------------------------------------- the comparison (shared with the CLI)


class NotBisectable(Exception):
    """Why a target's artifact cannot be compared layer by layer here (a report line, not misuse)."""


def reference_model(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """The model the artifact is compared with, and its label: the float counterpart when the model
    holds Q/DQ nodes (docs: the reference of a QDQ model), else the model itself."""
    from .quant.float_counterpart import float_counterpart, has_qdq

    if has_qdq(proto):
        return float_counterpart(proto), "the model's float counterpart (Q/DQ removed, weights dequantized)"
    return proto, "the model"


def artifact_proto(ctx: ModelContext, target) -> tuple[onnx.ModelProto, Path]:
    """The target's ONNX artifact, built as the target builds it; NotBisectable when it cannot be
    built, or for a TensorRT target where TensorRT is missing."""
    if target.engine == "tensorrt" and target.unavailable_reason():
        raise NotBisectable(TRT_NEEDED)
    try:
        path = target.artifact(ctx)
    except (CheckFailed, CheckSkipped) as exc:
        raise NotBisectable(f"the artifact of {target.name} cannot be built: {exc}") from None
    return (ctx.loaded.proto if Path(path) == ctx.path else onnx.load(os.fspath(path))), Path(path)


def layerwise_for(ctx: ModelContext, target, *, min_sqnr_db: float, max_feeds: int):
    """(LayerwiseReport, reference label, artifact path) of `target`'s artifact against the reference
    model, over the first `max_feeds` feeds of the context."""
    from .bisect.layerwise import layerwise_compare

    artifact, path = artifact_proto(ctx, target)
    reference, label = reference_model(ctx.loaded.proto)
    report = layerwise_compare(reference, artifact, ctx.feeds[:max_feeds], tolerance=min_sqnr_db, run_target=_engine_runner(target, path))
    return report, label, path


def _engine_runner(target, path: Path):
    """For a TensorRT target, its engine with every tensor marked as an output (Polygraphy's
    mark-all); None (ONNX Runtime with every tensor exposed) for the others."""
    if target.engine != "tensorrt":
        return None

    def run(_model, feeds):
        per_feed = target.run_exposed(path, feeds)
        return {name: [outputs[name] for outputs in per_feed] for name in set.intersection(*(set(o) for o in per_feed))}

    return run


def section_text(target_name: str, report, reference_label: str, plot: Path | None = None, *, outputs_failed: bool = True, engine: str = "onnxruntime") -> str:
    """The report section; `outputs_failed` says the target's outputs failed, so a layerwise report
    without a divergent tensor points at the optimized run. Defaults to True (a failed item).
    `engine` says what ran the artifact. Defaults to onnxruntime."""
    how = "the TensorRT engine with every tensor marked as an output" if engine == "tensorrt" else "ONNX Runtime with graph optimizations off"
    lines = [f"{target_name}: artifact vs {reference_label}, {how}", report.format()]
    if report.first_divergent is None and outputs_failed:
        lines.append(OPTIMIZED_ONLY)
    if plot is not None:
        lines.append(f"plot: {plot}")
    return "\n".join(lines)


def bisect_figures(target_name: str, report, reference_label: str, artifact: Path, plot: Path | None) -> dict:
    first = report.first_divergent
    return {
        "target": target_name, "reference": reference_label, "artifact": str(artifact),
        "first_divergent_nodes": first.nodes if first else [], "plot": str(plot) if plot else None,
        **report.to_dict(),
    }


def unique_path(directory: Path, stem: str, suffix: str) -> Path:
    """`directory/stem.suffix`, or `stem.1.suffix`, `stem.2.suffix`... when taken. The name is
    claimed by creating the file exclusively, so parallel workers never pick the same one."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(10_000):
        path = directory / (f"{stem}{suffix}" if index == 0 else f"{stem}.{index}{suffix}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"'{directory}' holds 10000 plots named {stem}*; clear the folder or pass another --bisect-plot")


# ---------------------------------------------------------------- the pytest hook


def accuracy_target(item) -> str | None:
    """The target name of a `target[<name>]::accuracy` item, else None."""
    check = getattr(item, "check", None)
    match = _ACCURACY_FAMILY.fullmatch(getattr(check, "family", "")) if check is not None else None
    return match["name"] if match and check.name == "accuracy" else None


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
        from .plugin import (
            STATE,  # the plugin imports the family registry: import at use
        )
        from .targets import get_target

        try:
            ctx = item.config.stash[STATE].context_for(item.path.resolve())
            target = get_target(name)
            report, label, artifact = layerwise_for(ctx, target, min_sqnr_db=self.settings.min_sqnr_db, max_feeds=self.settings.max_feeds)
        except NotBisectable as exc:
            return str(exc), {"target": name, "skipped": str(exc)}
        except Exception as exc:  # ORT or a graph the comparison cannot take: a line in the report, not an internal error
            return f"layerwise comparison failed: {type(exc).__name__}: {exc}", {"target": name, "error": f"{type(exc).__name__}: {exc}"}
        plot = self._plot(report, ctx.path.stem, name)
        return section_text(name, report, label, plot, engine=target.engine), bisect_figures(name, report, label, artifact, plot)

    def _plot(self, report, stem: str, name: str) -> Path | None:
        from .bisect.plot import layerwise_plot_html

        if self.settings.plot_dir is None:
            return None
        path = unique_path(self.settings.plot_dir, f"{stem}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.layerwise", ".html")
        layerwise_plot_html(report, path, title=f"Layerwise error: {stem} on {name}")
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
