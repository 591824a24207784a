"""ONNX Runtime on the CPU for every part of the project that executes a graph: the reference
(graph optimizations off), the `ort` target (all on), transforms' and quantizers' own checks.

Session options are decided here, once. This module depends on nothing else of the package, so
library code (transforms, quant, bisect) can run models without importing the target registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnxruntime as ort

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def create_session(model: ModelSource, *, optimized: bool, threads: int = 0) -> ort.InferenceSession:
    """An ORT CPU session. `optimized=False` is the reference: no graph rewrites, so what runs is
    the graph as written. `threads=0` lets ORT choose."""
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def output_names(session: ort.InferenceSession) -> list[str]:
    return [o.name for o in session.get_outputs()]


def run_feeds(session: ort.InferenceSession, feeds: Iterable[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Run every feed; one dict of named outputs per feed."""
    names = output_names(session)
    return [dict(zip(names, session.run(names, dict(feed)))) for feed in feeds]


def run_model(
    model: ModelSource, feeds: Iterable[Mapping[str, np.ndarray]], *, optimized: bool = False
) -> list[dict[str, np.ndarray]]:
    """One-shot convenience for tests and transforms: a session, every feed, the outputs."""
    return run_feeds(create_session(model, optimized=optimized), feeds)
