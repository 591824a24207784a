"""The run's stash key: where the session keeps its RunState. The family modules read the run's
state through this key, never through the plugin module.

The key is kept on the pytest module, not only here: pytester's in-process runs restore sys.modules
afterwards, so this module can be imported again while a family module imported earlier keeps the
old key, and a stash key from another import finds nothing (KeyError in the next in-process run).
"""

from __future__ import annotations

import pytest

STATE = pytest.__dict__.setdefault("_onnx2trt_check_state_key", pytest.StashKey["RunState"]())  # noqa: F821  RunState lives in state.py
