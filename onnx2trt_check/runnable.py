"""Whether ONNX Runtime runs a model at all, checked before a command transforms or quantizes it.

Every artifact is verified against the model's own ORT run. A valid ONNX model that ORT refuses at
run time (torch's dynamo exporter with optimize=False wrote a Conv bias of shape [C, 2], which
onnx.checker and shape inference accept) would otherwise fail the first step that needs that run,
which then takes the blame (optimize), or end in a traceback (quantize).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from .errors import ModelError, first_line
from .runtime import run_model


def require_runnable(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], name: str) -> None:
    """Run `model` on the first of `feeds`; ModelError with ORT's reason when it cannot."""
    runnable_outputs(model, list(feeds)[:1], name)


def runnable_outputs(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], name: str) -> list[dict[str, np.ndarray]]:
    """`model`'s outputs on `feeds` (run_model); ModelError with ORT's reason when it cannot run."""
    try:
        return run_model(model, list(feeds))
    except Exception as exc:  # noqa: BLE001 - ORT's own errors (Fail, InvalidGraph, NotImplemented, ...)
        raise ModelError(f"ONNX Runtime cannot run '{name}' ({type(exc).__name__}: {first_line(exc)}), so nothing can be verified "
                         "against it; fix or re-export the model") from None
