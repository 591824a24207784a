"""What a search over quantization choices maximizes: a score of a candidate model's outputs against
the float model's outputs on the same feeds (higher is better).

The automatic calibration (quant/auto_range.py) and bisect's fallback search (bisection/sensitivity.py)
both take an `Objective`, so a task metric (top-1 against labels, mAP, ...) can replace the default
without touching either search: any `objective(reference, outputs) -> float` fits.

The default is the worst output's SQNR in dB over all feeds: a relative measure, so one figure
serves outputs of any scale; -inf when the candidate has a NaN/Inf the reference does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from onnx2trt_check.compare import sqnr_db

Outputs = Mapping[str, np.ndarray]
Objective = Callable[[Sequence[Outputs], Sequence[Outputs]], float]


def output_sqnr_db(reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> float:
    """The worst SQNR (dB) over the float outputs, each over all feeds; -inf when `outputs` has a
    NaN/Inf where the reference is finite. Outputs that are not float (indices, masks) are not
    scored; with none scored the result is +inf (nothing to lose)."""
    worst = math.inf
    for name in reference[0]:
        if not np.issubdtype(np.asarray(reference[0][name]).dtype, np.floating):
            continue
        ref = np.concatenate([np.asarray(r[name], np.float64).ravel() for r in reference])
        got = np.concatenate([np.asarray(o[name], np.float64).ravel() for o in outputs])
        if np.any(~np.isfinite(got) & np.isfinite(ref)):
            return -math.inf
        worst = min(worst, sqnr_db(ref, got))
    return worst
