"""Shared by every test: nothing a test runs writes into the real user's cache folder."""

import pytest


@pytest.fixture(autouse=True)
def _private_user_cache(monkeypatch, tmp_path_factory):
    """`pytest --model` keeps pytest's cache in $XDG_CACHE_HOME (pytest_plugin/workspace.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "user-cache"))
