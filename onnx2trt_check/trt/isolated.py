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
import faulthandler
import multiprocessing
import os
import sys
import warnings
from concurrent.futures.process import BrokenProcessPool

_POOL: list[concurrent.futures.ProcessPoolExecutor] = []
_OWNER: list[int] = []  # the pid that started the worker: a forked child must start its own


class TrtCrashed(RuntimeError):
    """The TensorRT call killed its worker process (a crash inside TensorRT)."""


def _context():
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    if _POOL and _OWNER != [os.getpid()]:
        _POOL.clear()  # inherited through a fork: the worker belongs to the parent, leave it alone
    if not _POOL:
        _OWNER[:] = [os.getpid()]
        _POOL.append(_new_pool(1))
    return _POOL[0]


def _new_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    with warnings.catch_warnings():  # see the module docstring on fork
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
        return concurrent.futures.ProcessPoolExecutor(workers, mp_context=_context(), initializer=_quiet_crashes)


def _quiet_crashes() -> None:
    """A forked worker inherits pytest's faulthandler, which would print the parent's stack on a
    TensorRT crash; the crash is reported as TrtCrashed instead."""
    faulthandler.disable()


def call(function, *args, **kwargs):
    """`function(*args, **kwargs)` in the worker, in the caller's working folder; raises TrtCrashed
    when the worker dies."""
    try:
        with warnings.catch_warnings():  # the worker is forked on the first submit
            warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
            future = _pool().submit(_in_folder, os.getcwd(), function, args, kwargs)
        return future.result()
    except BrokenProcessPool:
        _POOL.pop().shutdown(wait=False, cancel_futures=True)
        raise TrtCrashed(f"{getattr(function, '__name__', function)} crashed its process (a crash inside TensorRT)") from None


def _in_folder(folder: str, function, args: tuple, kwargs: dict):
    """The worker outlives the folder it was started in (a later caller may have changed folder,
    as pytester does for each test): relative paths must mean what they mean to the caller."""
    os.chdir(folder)
    return function(*args, **kwargs)


def map_calls(function, arguments: list[tuple], *, workers: int = 2) -> list:
    """`function(*args)` for each tuple of `arguments` in `workers` processes; a call that crashes
    its worker gives a TrtCrashed in its place. A crash breaks the whole pool, so the calls that
    were in flight are run again one at a time to find the one that crashed. Never nested in a
    worker: a fork inside a forked pool worker can deadlock on a lock copied mid-use."""
    results: dict[int, object] = {}
    pending = list(range(len(arguments)))
    while pending:
        pool = _new_pool(workers)
        futures = [(index, pool.submit(_in_folder, os.getcwd(), function, arguments[index], {})) for index in pending]
        broken = [index for index, future in futures if not _collect(future, index, results)]
        pool.shutdown(wait=False, cancel_futures=True)
        if broken:
            try:
                results[broken[0]] = call(function, *arguments[broken[0]])
            except TrtCrashed as error:
                results[broken[0]] = error
        pending = broken[1:]
    return [results[index] for index in range(len(arguments))]


def _collect(future, index: int, results: dict) -> bool:
    try:
        results[index] = future.result()
    except BrokenProcessPool:
        return False
    return True


def shutdown() -> None:
    """Stop the worker (tests and benchmarks that want a clean process)."""
    while _POOL:
        _POOL.pop().shutdown(wait=True)
