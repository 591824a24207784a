"""How a target is timed: one call that runs one feed, on a session created once.

`Target.run` builds a session for every call (right for accuracy, wrong for latency, where the
session set-up would dominate), so latency goes through `timed_runner` instead. A target may define
its own `timed_runner(artifact_path, feed) -> Callable[[], object]`; otherwise ONNX Runtime targets
get `ort_runner` (TensorRT targets define their own, on Polygraphy's TrtRunner), and any other
engine is refused with `TimingNotImplemented` (its reason becomes
the skip reason of the latency item).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

import numpy as np

from ..runtime import create_session, output_names


class TimingNotImplemented(Exception):
    """The target has no way to be timed; the message is the skip reason."""


def timed_runner(target, artifact_path: str | os.PathLike, feed: Mapping[str, np.ndarray]) -> Callable[[], object]:
    """A no-argument call that runs `feed` once on `target`, with every set-up done beforehand."""
    own = getattr(target, "timed_runner", None)
    if callable(own):
        return own(artifact_path, feed)
    engine = getattr(target, "engine", "") or "unknown"
    if engine == "onnxruntime":
        return ort_runner(artifact_path, feed)
    # TensorRT targets bring their own timed_runner (above); an emulation's speed says nothing
    # about a deployment's, so it is not timed rather than timed wrongly.
    raise TimingNotImplemented(f"timing not implemented for {target.name} (engine {engine}); only deployment targets of engine 'onnxruntime' are timed")


def ort_runner(artifact_path: str | os.PathLike, feed: Mapping[str, np.ndarray], *, threads: int = 0) -> Callable[[], object]:
    """`session.run` on a session created once, with every graph optimization as `ort` deploys
    it. `threads=0` lets ONNX Runtime choose. Defaults to 0."""
    session = create_session(artifact_path, optimized=True, threads=threads)
    return functools.partial(session.run, output_names(session), dict(feed))
