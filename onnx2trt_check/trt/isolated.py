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

`submit` queues a call and returns at once (the pytest face queues a model's parse and builds
ahead of their items, pytest_plugin/trt_jobs.py, so the worker builds on another core while the
caller goes on); `call` is a submit that waits. The worker runs its calls in the order queued, so a
crash belongs to the earliest unfinished call, and the calls queued behind it run again in a new
worker (Pending).
"""

from __future__ import annotations

import concurrent.futures
import faulthandler
import multiprocessing
import os
import sys
import warnings
import weakref
from concurrent.futures.process import BrokenProcessPool

from ..leftovers import exit_with_parent

_POOL: list[concurrent.futures.ProcessPoolExecutor] = []
_OWNER: list[int] = []  # the pid that started the worker: a forked child must start its own
_QUEUED: list[concurrent.futures.Future] = []  # the worker's calls not known to have succeeded, in order


class TrtCrashed(RuntimeError):
    """The TensorRT call killed its worker process (a crash inside TensorRT)."""


def _context():
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    if _POOL and _OWNER != [os.getpid()]:
        _POOL.clear()  # inherited through a fork: the worker belongs to the parent, leave it alone
        _QUEUED.clear()
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
    TensorRT crash; the crash is reported as TrtCrashed instead. It exits with its caller: a caller
    killed without stopping it left it waiting for work forever (leftovers.py)."""
    faulthandler.disable()
    exit_with_parent()


def call(function, *args, **kwargs):
    """`function(*args, **kwargs)` in the worker, in the caller's working folder; raises TrtCrashed
    when the worker dies."""
    return submit(function, *args, **kwargs).result()


class Pending:
    """A call queued on the worker (`submit`); `result()` waits for it.

    The worker runs its calls one at a time, in the order submitted, so when it dies the call
    that killed it is the earliest one left unfinished: that call raises TrtCrashed. A later call
    that was only queued behind it runs again in a new worker, so another call's crash is never
    reported as its own."""

    def __init__(self, function, args: tuple, kwargs: dict):
        self.function, self.args, self.kwargs = function, args, kwargs
        pool, self.earlier = _pool(), [future for future in _QUEUED if not future.done() or _broken(future)]
        try:
            self.future = _submit(pool, function, args, kwargs)
        except BrokenProcessPool:  # an earlier call killed the worker; its owner has not asked yet
            _drop(pool)
            pool, self.earlier = _pool(), []
            self.future = _submit(pool, function, args, kwargs)
        self.pool = weakref.ref(pool)  # not kept alive by its calls: shutdown() and exit release it
        _QUEUED[:] = [*self.earlier, self.future]

    def result(self):
        """The call's value; raises what the call raised, or TrtCrashed. Asked again, the same answer."""
        if not hasattr(self, "_outcome"):
            try:
                self._outcome = (True, self._wait())
            except Exception as error:
                self._outcome = (False, error)
        succeeded, value = self._outcome
        if not succeeded:
            raise value
        return value

    def _wait(self):
        try:
            return self.future.result()
        except BrokenProcessPool:
            _drop(self.pool())
            if any(_broken(future) for future in self.earlier):
                return call(self.function, *self.args, **self.kwargs)  # alone, in a new worker
            name = getattr(self.function, "__name__", self.function)
            raise TrtCrashed(f"{name} crashed its process (a crash inside TensorRT)") from None


def _submit(pool, function, args: tuple, kwargs: dict) -> concurrent.futures.Future:
    with warnings.catch_warnings():  # the worker is forked on the first submit
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
        return pool.submit(_in_folder, os.getcwd(), function, args, kwargs)


def _drop(pool) -> None:
    """Forget a broken worker (once: several calls may find it broken)."""
    if _POOL and _POOL[0] is pool:
        _POOL.pop().shutdown(wait=False, cancel_futures=True)
        _QUEUED.clear()


def submit(function, *args, **kwargs) -> Pending:
    """Queue `function(*args, **kwargs)` on the worker, in the caller's working folder, and return
    at once: the caller goes on while the worker computes (`Pending.result()` waits)."""
    return Pending(function, args, kwargs)


def _broken(future: concurrent.futures.Future) -> bool:
    """A finished call that ended with its worker (waits for an unfinished one)."""
    return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


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
    _QUEUED.clear()
