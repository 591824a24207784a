"""Which TensorRT: TensorRT proper (10.x, 11.x; module `tensorrt`) or TensorRT-RTX (1.x; module
`tensorrt_rtx`), and the one place either is imported.

Both ship the same ONNX parser and builder API, but they are different products: TensorRT-RTX
builds ahead of time on a CPU-only machine and runs engines only on GPUs of compute capability
8.0/8.6/8.9/12.x; it is strongly typed only (no fp16/int8 builder flags, no calibrators, as on
TensorRT 11) and ships no plugin library. So every figure and message carries `Flavour.label`
("TensorRT-RTX 1.7.1.116"): a TensorRT-RTX result is never reported as a TensorRT 10/11 one.

Choice, in order: the `--trt-flavour` option (an argument here), the environment variable
ONNX2TRT_CHECK_TRT, then whichever is installed (TensorRT proper first when both are: it is what
most deployments run). Values: "tensorrt", "tensorrt-rtx", "auto".

Polygraphy picks its TensorRT module once, when `polygraphy.backend.trt` is first imported
(`polygraphy.config.USE_TENSORRT_RTX`, from POLYGRAPHY_USE_TENSORRT_RTX); `polygraphy_backend`
sets that switch to the chosen flavour before the import and refuses a process where Polygraphy
already bound the other one.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys

from ..errors import ConfigError

ENV_VAR = "ONNX2TRT_CHECK_TRT"
CHOICES = ("auto", "tensorrt", "tensorrt-rtx")
_NAMES = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX"}
_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
INSTALL_HINTS = {
    "tensorrt": "pip install 'onnx2trt_check[trt]'",
    "tensorrt-rtx": "pip install 'onnx2trt_check[trt-rtx]' (Linux x86-64, Python 3.11/3.12; builds without a GPU)",
}
INSTALL_HINT = f"{INSTALL_HINTS['tensorrt']} for TensorRT, or {INSTALL_HINTS['tensorrt-rtx']}"
# Compute capabilities TensorRT-RTX 1.x runs engines on (its ComputeCapability enum less SM75,
# which its release notes list for building only); Hopper (9.0) is not among them.
RTX_RUNS_ON = ((8, 0), (8, 6), (8, 9), (12, 0), (12, 1))


_RUN_CHOICE: list[str] = []  # the run's --trt-flavour, set once by the pytest face or the CLI


def set_choice(choice: str | None) -> None:
    """Make `choice` the process's flavour choice (below an explicit argument, above the env var)."""
    _RUN_CHOICE[:] = [requested(choice)] if choice else []


class TrtUnavailable(Exception):
    """No usable TensorRT flavour; the message says which was looked for and how to install it."""


@dataclasses.dataclass(frozen=True)
class Flavour:
    """One installed TensorRT: `key` is "tensorrt" or "tensorrt-rtx", `version` its __version__."""

    key: str
    version: str

    @property
    def name(self) -> str:
        return _NAMES[self.key]

    @property
    def label(self) -> str:
        """E.g. "TensorRT-RTX 1.7.1.116" or "TensorRT 10.13.0.35": in every figure and message."""
        return f"{self.name} {self.version}"

    @property
    def is_rtx(self) -> bool:
        return self.key == "tensorrt-rtx"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT-RTX and TensorRT >= 11 have no fp16/int8 builder flags and no calibrators."""
        return self.is_rtx or self.major >= 11

    @property
    def has_plugin_library(self) -> bool:
        """TensorRT proper ships libnvinfer_plugin (NMS, RoiAlign, DeformConv ...); TensorRT-RTX none."""
        return not self.is_rtx

    @property
    def precision_api(self) -> int:
        """The `trt_major` of TrtBuildOptions: 11 (strongly typed only) for TensorRT-RTX, else the major.
        TensorRT-RTX's own major (1) is never read as a TensorRT version."""
        return 11 if self.is_rtx else self.major

    def module(self):
        """The flavour's Python module, imported."""
        return importlib.import_module(_MODULES[self.key])


def requested(choice: str | None = None) -> str:
    """The requested flavour key or "auto": `choice` (the option) wins over the environment variable."""
    value = (choice or (_RUN_CHOICE[0] if _RUN_CHOICE else None) or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if value not in CHOICES:
        source = "--trt-flavour" if choice else ENV_VAR
        raise ConfigError(f"{source}={value!r} is not one of {', '.join(CHOICES)}; pick one of them")
    return value


def probe(key: str) -> Flavour | str:
    """The installed flavour `key`, or why it cannot be used (missing, or failing to import: the
    registry's `tensorrt` stub packages install but do not import)."""
    module = _MODULES[key]
    try:
        version = importlib.import_module(module).__version__
    except ModuleNotFoundError as error:
        if error.name == module:
            return f"{_NAMES[key]} is not installed ({INSTALL_HINTS[key]})"
        return f"{_NAMES[key]} ({module}) failed to import: {error}"
    except Exception as error:  # a broken install raises OSError, ImportError, ... naming the cause
        return f"{_NAMES[key]} ({module}) failed to import: {type(error).__name__}: {error}"
    return Flavour(key, str(version))


def select(choice: str | None = None) -> Flavour:
    """The flavour to use (see the module docstring); raises TrtUnavailable with the reason."""
    wanted = requested(choice)
    keys = ("tensorrt", "tensorrt-rtx") if wanted == "auto" else (wanted,)
    reasons = []
    for key in keys:
        found = probe(key)
        if isinstance(found, Flavour):
            return found
        reasons.append(found)
    if wanted == "auto":
        raise TrtUnavailable(f"no TensorRT is installed ({INSTALL_HINT})" if all("not installed" in r for r in reasons) else "; ".join(reasons))
    if not (choice or _RUN_CHOICE):  # the environment chose: a skip reason must say so, or the cause is hidden
        raise TrtUnavailable(f"{reasons[0]}; {ENV_VAR}={wanted} asks for it (unset it to use whichever TensorRT is installed)")
    raise TrtUnavailable(reasons[0])


def unavailable_reason(choice: str | None = None) -> str | None:
    """None when a flavour can be selected, else why not."""
    try:
        select(choice)
    except TrtUnavailable as error:
        return str(error)
    return None


def polygraphy_backend(key: str):
    """`polygraphy.backend.trt`, bound to flavour `key`'s module ("tensorrt" or "tensorrt-rtx").
    Raises ConfigError when this process already imported it for the other flavour (Polygraphy
    binds its TensorRT module once)."""
    from polygraphy import config  # noqa: PLC0415 - Polygraphy is imported only where TensorRT is used

    rtx = key == "tensorrt-rtx"
    if "polygraphy.backend.trt" in sys.modules and bool(config.USE_TENSORRT_RTX) != rtx:
        raise ConfigError(
            f"Polygraphy's TensorRT backend was already loaded for the other flavour in this process; "
            f"start a new process with {ENV_VAR}={key} (and POLYGRAPHY_USE_TENSORRT_RTX={int(rtx)})"
        )
    config.USE_TENSORRT_RTX = rtx
    return importlib.import_module("polygraphy.backend.trt")
