"""Project-wide test settings for the project's own tests (not part of the installed plugin)."""

import os

import onnxsim  # noqa: F401  imported once up front: its pybind11 module cannot be imported twice, as pytester's in-process runs would
from hypothesis import HealthCheck, settings

# `ci`: reproducible runs (derandomize) so a red CI run is a real finding that reruns the same way.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
# `dev`: random exploration; more examples find more bugs when there is time.
settings.register_profile("dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
