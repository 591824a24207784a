"""A quicker interpreter exit after a `pytest --model` run (issue 18).

A run's process holds a large heap of long-lived objects from its imports: onnx, onnx-ir with the
sympy it imports, numpy, ONNX Runtime, pytest. At exit CPython clears every module and runs full
garbage collections over all of them (sympy alone: 0.3-0.6 s on the project's 2-core machine).
`gc.freeze()` (CPython's documented call: every object tracked so far moves to a permanent
generation that collections ignore), called once the library is imported and before any model is
loaded, takes that heap out of every later collection, the run's and the exit's. Those objects are
still freed by reference counting when the modules are cleared; only a cycle among them that
becomes garbage stays until the process ends. The models, feeds and sessions come later and are
collected as usual.

Not at exit (atexit), nor when onnxsim is already imported (a conftest or an earlier in-process
run imported it): frozen, onnxsim's nanobind types and instances are never collected, and nanobind
prints "leaked instances" warnings when its extension is torn down. onnxsim is our one nanobind
extension; the others (onnx, ONNX Runtime, TensorRT) use pybind11, which does not check.

pytest owns the process here (the `pytest` command, `onnx2trt-check check`). The Python API
(onnx2trt_check.check) runs pytest inside a user's program, whose objects are none of this run's
business: it blocks this plugin with `-p no:onnx2trt_check_fast_exit`, as anyone may.
"""

from __future__ import annotations

import gc
import sys

NAME = "onnx2trt_check_fast_exit"
_FROZEN: list[bool] = []  # once per process: pytester runs pytest many times in one


class FastExit:
    """A plugin object with no hooks: registering it under NAME is what `-p no:NAME` can block."""


def register(config) -> None:
    """Freezes the heap of the imports, unless `-p no:onnx2trt_check_fast_exit` blocked it."""
    if config.pluginmanager.register(FastExit(), NAME) and not _FROZEN and "onnxsim" not in sys.modules:
        _FROZEN.append(True)
        gc.freeze()
