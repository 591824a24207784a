"""TensorRT calls in a worker process, so a crash inside TensorRT is a finding, not the end of the run.

TensorRT-RTX 1.7.1.116 segfaults while building a Q/DQ network whose scale is computed from the
data (tests/qdq_rule_models.py, "QDQ002 scale computed from the data"): in the pytest process that
would kill the whole run. One worker per process, started on first use ("spawn": the caller may
hold ONNX Runtime threads, which fork does not copy safely) and kept for later calls, so only the
first call pays the start. A worker that dies is replaced.

On Linux the worker is forked (about 0.4 s with the TensorRT import, against 2 s for a spawned
interpreter that imports numpy, onnx and TensorRT again): the caller's ONNX Runtime and BLAS
threads are not copied and the worker never touches them, so fork's caveat for threaded parents
(a lock held by another thread at the fork) does not reach the TensorRT code; Python's warning
about it is silenced for that one call. Elsewhere the worker is spawned.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
import warnings
from concurrent.futures.process import BrokenProcessPool

_POOL: list[concurrent.futures.ProcessPoolExecutor] = []


class TrtCrashed(RuntimeError):
    """The TensorRT call killed its worker process (a crash inside TensorRT)."""


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    if not _POOL:
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        _POOL.append(concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)))
    return _POOL[0]


def call(function, *args, **kwargs):
    """`function(*args, **kwargs)` in the worker; raises TrtCrashed when the worker dies."""
    try:
        with warnings.catch_warnings():  # the worker is forked on the first submit
            warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
            future = _pool().submit(function, *args, **kwargs)
        return future.result()
    except BrokenProcessPool:
        _POOL.pop().shutdown(wait=False, cancel_futures=True)
        raise TrtCrashed(f"{getattr(function, '__name__', function)} crashed its process (a crash inside TensorRT)") from None


def shutdown() -> None:
    """Stop the worker (tests and benchmarks that want a clean process)."""
    while _POOL:
        _POOL.pop().shutdown(wait=True)
