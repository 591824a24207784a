"""The visible CUDA devices and whether the selected TensorRT flavour runs engines on them.

The driver library ships with the NVIDIA driver itself, so probing it needs neither cuda-python nor
the CUDA runtime; cuda-python would be one more optional dependency for five calls.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os

from .flavour import RTX_RUNS_ON, Flavour

_CUDA_DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
# CUdevice_attribute values (cuda.h): CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
_CC_MAJOR, _CC_MINOR = 75, 76


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"


def cuda_devices() -> tuple[list[Device], str]:
    """The visible CUDA devices (CUDA_VISIBLE_DEVICES applies), and how they were found or why none was."""
    driver, how = _load_cuda_driver()
    if driver is None:
        return [], how
    status = driver.cuInit(0)
    if status != 0:
        return [], f"{how}: cuInit returned CUDA error {status}"
    count = ctypes.c_int(0)
    status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != 0 or count.value == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return [], f"{how}: cuDeviceGetCount found no device (status {status}, CUDA_VISIBLE_DEVICES={visible!r})"
    return [_device(driver, index) for index in range(count.value)], f"{how}: {count.value} device(s)"


def _load_cuda_driver():
    for library in _CUDA_DRIVER_LIBRARIES:
        try:
            return ctypes.CDLL(library), f"CUDA driver {library}"
        except OSError:
            continue
    return None, f"no NVIDIA driver: none of {', '.join(_CUDA_DRIVER_LIBRARIES)} could be loaded"


def _device(driver, index: int) -> Device:
    device = ctypes.c_int(0)
    driver.cuDeviceGet(ctypes.byref(device), index)
    name = ctypes.create_string_buffer(256)
    driver.cuDeviceGetName(name, len(name), device)
    return Device(name.value.decode(errors="replace"), (_attribute(driver, _CC_MAJOR, device), _attribute(driver, _CC_MINOR, device)))


def _attribute(driver, attribute: int, device) -> int:
    getter = getattr(driver, "cuDeviceGetAttribute", None)
    if getter is None:  # a driver stand-in without attributes: capability unknown
        return 0
    value = ctypes.c_int(0)
    getter(ctypes.byref(value), attribute, device)
    return value.value


def runs_on(flavour: Flavour, device: Device) -> str | None:
    """None when `flavour` runs engines on `device`, else why not (TensorRT-RTX: 8.0/8.6/8.9/12.x only)."""
    if not flavour.is_rtx or device.capability in RTX_RUNS_ON:
        return None
    supported = ", ".join(f"{major}.{minor}" for major, minor in RTX_RUNS_ON)
    return f"{flavour.label} does not run engines on compute capability {device.sm} ({device.name}); it runs on {supported}"


def inference_unavailable_reason(flavour: Flavour) -> str | None:
    """None when the first visible device runs `flavour`'s engines, else the exact reason."""
    devices, how = cuda_devices()
    if not devices:
        return f"no CUDA device is visible ({how}); {flavour.label} builds here but runs engines only on a GPU"
    return runs_on(flavour, devices[0])
