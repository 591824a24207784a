"""Shared by every test: nothing a test runs writes into the real user's cache folder; the `rtx`
fixture of the TensorRT tests."""

import pytest

# Held by the test process, so pytester's in-process runs (which drop the modules they import) all
# use these modules and their one stash key, whichever test file runs first.
import onnx2trt_check.pytest_plugin.session  # noqa: F401
from onnx2trt_check.trt import flavour


@pytest.fixture(autouse=True)
def _private_user_cache(monkeypatch, tmp_path_factory):
    """`pytest --model` keeps pytest's cache in $XDG_CACHE_HOME (pytest_plugin/workspace.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "user-cache"))


@pytest.fixture
def rtx(monkeypatch):
    """TensorRT-RTX, chosen explicitly (a TensorRT 10 install beside it would otherwise win)."""
    found = flavour.probe("tensorrt-rtx")
    if not isinstance(found, flavour.Flavour):
        pytest.skip(found)
    monkeypatch.setenv(flavour.ENV_VAR, "tensorrt-rtx")
    return found
