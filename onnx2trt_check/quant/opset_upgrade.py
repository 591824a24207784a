"""A model below opset 13 brought to opset 13 for quantization, and the conversion checked.

Why: the Q/DQ the quantizer writes are opset 13's (per-channel DequantizeLinear with `axis`, what
TensorRT's explicit quantization reads), and an opset-11/12 export (older torch exports, tf2onnx,
model zoos) cannot hold them; such a model was refused with "convert the model first". onnx's own
version converter does the conversion (adapters for Squeeze/Unsqueeze/Split/Reduce*/Resize...), but
it has known gaps that change a model's numbers or shapes without an error, so the converted model
is run against the original on calibration feeds and used only when every output agrees within the
fp32 tolerance; else the model is refused with the output that differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from ..compare import Tolerance, compare_output
from ..errors import ModelError, first_line
from ..protos import default_opset
from ..runtime import run_model
from .insert_qdq import MIN_OPSET

# The conversion is checked on this many calibration feeds: enough to catch a wrong adapter, bounded
# so a large calibration set does not run the model twice over for it.
CHECK_FEEDS = 8


def upgrade_for_qdq(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> tuple[onnx.ModelProto, dict | None]:
    """(`model` at opset >= 13, the conversion's figures or None when it needed none). A ModelError
    when onnx's converter fails or its result differs from `model` on `feeds`."""
    opset = default_opset(model)
    if opset >= MIN_OPSET:
        return model, None
    try:
        converted = onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises bare RuntimeErrors/ValueErrors of its C++ core
        raise ModelError(_refusal(opset, f"onnx's version converter failed on it ({first_line(exc)})")) from None
    check = list(feeds[:CHECK_FEEDS])
    worst = _worst_difference(model, converted, check, opset)
    return converted, {"from": opset, "to": MIN_OPSET, "checked_feeds": len(check), "max_abs": worst}


def _worst_difference(model: onnx.ModelProto, converted: onnx.ModelProto, feeds: list, opset: int) -> float:
    try:
        before, after = run_model(model, feeds), run_model(converted, feeds)
    except Exception as exc:  # ONNX Runtime's error for a converted graph it cannot load or run
        raise ModelError(_refusal(opset, f"the converted model does not run ({first_line(exc)})")) from None
    worst = 0.0
    for name in before[0]:
        stats = compare_output(name, [f[name] for f in before], [f.get(name) for f in after], Tolerance())
        if not stats.passed:
            raise ModelError(_refusal(opset, f"onnx's version converter changed output '{name}' ({stats.problems[0]})"))
        worst = max(worst, stats.max_abs)
    return worst


def _refusal(opset: int, why: str) -> str:
    return (f"model opset {opset} < {MIN_OPSET}: the quantizer writes opset-{MIN_OPSET} Q/DQ (per-channel DequantizeLinear, "
            f"which TensorRT's explicit quantization reads), and {why}; re-export the model at opset {MIN_OPSET} or later")
