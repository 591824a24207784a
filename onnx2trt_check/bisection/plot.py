"""A per-layer error plot of a layerwise report: one self-contained HTML file, inline SVG.

Two panels along the topological order of the compared tensors: SQNR in dB, and the relative L2
error on a log10 axis. Hovering a point shows the tensor, its node and figures (SVG <title>). The
first divergent tensor is marked in red and the SQNR floor drawn as a dashed line. Hand-written SVG
because the product must not depend on matplotlib or ship JavaScript.
"""

from __future__ import annotations

import html
import math
import os

from onnx2trt_check.bisection.layerwise import LayerwiseReport
from onnx2trt_check.fileio import atomic_write_text

WIDTH, HEIGHT, MARGIN = 900, 220, 50
SQNR_CEILING = 140.0  # exact tensors (inf dB) are drawn at the top, labelled "exact"
SQNR_FLOOR = -20.0
REL_ERROR_FLOOR = 1e-12


def layerwise_plot_html(report: LayerwiseReport, path: str | os.PathLike | None = None, *, title: str = "Layerwise error") -> str:
    """The HTML document; also written atomically to `path` when given (Defaults to not written)."""
    sqnr = [_clamp(row.sqnr_db, SQNR_FLOOR, SQNR_CEILING) for row in report.tensors]
    rel = [math.log10(_clamp(row.relative_error, REL_ERROR_FLOOR, 1e6)) for row in report.tensors]
    tips = [_tip(row) for row in report.tensors]
    first = report.tensors.index(report.first_divergent) if report.first_divergent else None
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(report.tensors)} tensors in topological order; "
        + (f"first divergent: <b>{html.escape(report.first_divergent.tensor)}</b>" if first is not None else "no tensor beyond tolerance")
        + "</p>",
        _panel("SQNR (dB)", sqnr, tips, first, floor=report.min_sqnr_db),
        _panel("relative L2 error (log10)", rel, tips, first, floor=None),
    ]
    document = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>{''.join(body)}</body></html>"
    if path is not None:
        atomic_write_text(path, document)
    return document


def _clamp(value: float, low: float, high: float) -> float:
    if math.isnan(value):
        return low
    return min(max(value, low), high)


def _tip(row) -> str:
    return (f"{row.tensor} (ref {row.reference}) @ {', '.join(row.nodes) or 'input'}: SQNR {row.sqnr_db:.2f} dB, "
            f"rel err {row.relative_error:.3g}, cosine {row.cosine:.6f}, max abs {row.max_abs:.4g}")


def axis_range(values: list[float]) -> tuple[float, float]:
    """(low, high) of the axis: the values' range, widened by 1 when flat so nothing divides by 0."""
    low, high = min(values, default=0.0), max(values, default=1.0)
    return (low - 0.5, high + 0.5) if high - low < 1e-9 else (low, high)


def _panel(label: str, values: list[float], tips: list[str], first: int | None, *, floor: float | None) -> str:
    low, high = axis_range(values + ([floor] if floor is not None else []))
    step = (WIDTH - 2 * MARGIN) / max(len(values) - 1, 1)

    def x(i: int) -> float:
        return MARGIN + i * step

    def y(v: float) -> float:
        return HEIGHT - MARGIN / 2 - (v - low) / (high - low) * (HEIGHT - MARGIN)

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' role='img'>",
             f"<text x='4' y='14' font-size='12'>{html.escape(label)}: {high:.3g} (top) .. {low:.3g} (bottom)</text>",
             f"<polyline fill='none' stroke='steelblue' stroke-width='1.5' points='{points}'/>"]
    if floor is not None:
        parts.append(f"<line x1='{MARGIN}' x2='{WIDTH - MARGIN}' y1='{y(floor):.1f}' y2='{y(floor):.1f}' stroke='gray' stroke-dasharray='4 3'/>")
    for i, (v, tip) in enumerate(zip(values, tips)):
        color = "red" if i == first else "steelblue"
        parts.append(f"<circle cx='{x(i):.1f}' cy='{y(v):.1f}' r='{4 if i == first else 2}' fill='{color}'><title>{html.escape(tip)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)
