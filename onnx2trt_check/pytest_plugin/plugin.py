"""The pytest plugin: `pytest --model x.onnx`. Registered through the `pytest11` entry point, so it is
imported by every pytest run wherever the package is installed: it imports nothing heavy. Without
`--model` it only adds its options; with it, session.py loads the models and registers the run.
"""

from __future__ import annotations

import pytest

from . import options


def pytest_addoption(parser, pluginmanager) -> None:
    """Our options are added once the project's initial conftest.py files have added theirs
    (pytest_load_initial_conftests below): a project whose conftest.py defines --model or --seed
    (common in ML test suites) failed to start at all once this package was installed ("option
    names {'--seed'} already added"); now its flag is its own and ours is --onnx2trt-seed. Loaded
    by a conftest.py's pytest_plugins, the plugin misses that hook (it is already running), so its
    options are added here."""
    if getattr(pluginmanager, "_conftest_plugins", None):
        options.add_options(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    options.keep_values_out_of_paths(early_config.known_args_namespace, args)
    result = yield
    options.add_options(parser)
    return result


@pytest.hookimpl(tryfirst=True)  # before the cache and benchmark plugins are configured (workspace.py)
def pytest_configure(config) -> None:
    if not options.value(config, "model"):
        return
    from ..leftovers import quiet_onnxruntime, stop_on_sigterm

    quiet_onnxruntime()  # before the library imports ONNX Runtime
    config.add_cleanup(stop_on_sigterm())  # a stopped run removes its run folder too
    from ..deferred_imports import defer_sympy

    defer_sympy()  # before onnx-ir is imported: its sympy is loaded only if used
    from .session import start_run  # the library: onnx, onnxruntime, numpy

    try:
        start_run(config)
    except KeyboardInterrupt as exc:
        # Before the session starts pytest reports an interrupt with no word: a CI timeout (SIGTERM) or a
        # Ctrl-C while a data loader read a dataset ended the run with exit 2 and an empty log.
        import sys

        print(f"onnx2trt_check: interrupted ({str(exc) or 'Ctrl-C'}) while reading the models and their data, "
              "before the first item: nothing was checked", file=sys.stderr)
        raise
