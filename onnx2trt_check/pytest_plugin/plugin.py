"""The pytest plugin: `pytest --model x.onnx`. Registered through the `pytest11` entry point, so it is
imported by every pytest run wherever the package is installed: it imports nothing heavy. Without
`--model` it only adds its options; with it, session.py loads the models and registers the run.
"""

from __future__ import annotations

import pytest

from . import options


def pytest_addoption(parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)  # before the cache and benchmark plugins are configured (workspace.py)
def pytest_configure(config) -> None:
    if not config.getoption("model"):
        return
    from ..leftovers import quiet_onnxruntime, stop_on_sigterm

    quiet_onnxruntime()  # before the library imports ONNX Runtime
    config.add_cleanup(stop_on_sigterm())  # a stopped run removes its run folder too
    from ..deferred_imports import defer_sympy

    defer_sympy()  # before onnx-ir is imported: its sympy is loaded only if used
    from .session import start_run  # the library: onnx, onnxruntime, numpy

    start_run(config)
