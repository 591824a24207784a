"""Which of our quantizer's options would change nothing in a run: the one rule `quantize`,
`bisect` and `pytest --model` apply. A light module (no numpy, no scipy): the pytest plugin checks
its options with it at startup, before any model is read."""

from __future__ import annotations

from collections.abc import Mapping

# Our quantizer's options, as flags: the faces name what a user set by these.
QUANTIZER_FLAGS = ("--calibration-method", "--percentile", "--per-tensor", "--cle", "--cle-relu6", "--bias-correction", "--exclude")


def idle_quantizer_options(given: Mapping[str, object], *, not_quantizing: str | None = None) -> str | None:
    """Why an option of our quantizer would change nothing (misuse, not silently dropped), or None;
    the one rule of `quantize`, `bisect` and `pytest --model`. `given`: flag -> its value when set,
    a false value otherwise (--calibration-method's value is the method). `not_quantizing`: why this
    run builds no int8 model of ours (no calibration data; a model with its own Q/DQ), None when it
    does. --percentile is read by the percentile method and by auto (one of its candidates), never
    by max, entropy or mse; --cle-relu6 says what equalization does with ReLU6 (nothing without --cle)."""
    used = [flag for flag in QUANTIZER_FLAGS if given.get(flag)]
    if used and not_quantizing:
        return f"{', '.join(used)} would change nothing here ({not_quantizing}); leave out what does not apply"
    method = given.get("--calibration-method") or "auto"
    if given.get("--percentile") and method not in ("auto", "percentile"):
        return (f"--percentile would change nothing with --calibration-method {method} (it reads no percentile); "
                "use --calibration-method percentile or auto, or leave --percentile out")
    if given.get("--cle-relu6") and not given.get("--cle"):
        return "--cle-relu6 would change nothing without --cle (it says what equalization does with ReLU6); add --cle or leave --cle-relu6 out"
    return None


# Why a run builds no int8 model of ours (idle_quantizer_options' `not_quantizing`).
NO_CALIBRATION_DATA = "they shape our int8 quantization of calibration data, and this run has none; pass --calibration-data calib.npz"
OWN_QDQ = "the model holds its own Q/DQ nodes: ort-int8 runs it as it is, nothing is quantized"
