"""`ort`: ONNX Runtime on the CPU with every graph optimization, as a deployment would run it."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..runtime import run_model
from .base import Target


class OrtTarget(Target):
    """`ort`: ONNX Runtime on the CPU with every graph optimization, as a deployment would run it,
    but the two rewrites runtime.create_session disables (wrong on float8 Q/DQ: a deployment of
    such a model in ORT 1.32 is off where this target passes; zoo12 fp8_qdq_op21)."""

    name = "ort"
    engine = "onnxruntime"  # the summary labels figures by engine, so ORT is never shown as TensorRT
    description = "ONNX Runtime CPU, all graph optimizations"

    def run(self, model_path: str | os.PathLike, feeds: list[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return run_model(model_path, feeds, optimized=True, release=True)
