"""Shared test set-up.

pytester's in-process runs restore sys.modules afterwards, dropping the modules the run imported
first. The plugin imports its session modules lazily (only with --model), so a second in-process
run in one test would re-import some of them while the package keeps the old submodule attributes
(`from . import int8` reuses the stale module): two StashKeys, and a KeyError. Importing them once
here keeps one copy for the whole test session, whatever order the tests run in.
"""

import onnx2trt_check.pytest_plugin.session  # noqa: F401
