"""The run's stash key: where the session keeps its RunState. The family modules read the run's
state through this key, never through the plugin module."""

from __future__ import annotations

import pytest

STATE = pytest.StashKey["RunState"]()  # noqa: F821  RunState lives in state.py, which imports the library
