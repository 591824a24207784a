"""What the summary says the feeds covered: a model may be wrong only outside what was run, so a
run states it (the range of every float input here; the shapes and the default integer ranges in
context.ModelContext.notes and data.default_range_notes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def value_range_note(feeds: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """The range of every float input over the feeds, in one note: a model may be wrong only
    outside it (plant12: an input clipped to the data's range passed), and the summary must say
    what the data covered. Integer inputs are left to default_range_notes."""
    ranges = []
    for name in (feeds[0] if feeds else {}):
        values = [np.asarray(feed[name]) for feed in feeds]
        if not all(v.dtype.kind == "f" and v.size for v in values):
            continue
        finite = [v[np.isfinite(v)] for v in values]
        if any(f.size for f in finite):
            low, high = (float(op(np.concatenate([f.ravel() for f in finite]))) for op in (np.min, np.max))
            ranges.append(f"{name} in [{low:.4g}, {high:.4g}]")
    return [f"float input values on the feeds: {', '.join(ranges)} (nothing outside is checked)"] if ranges else []
