"""What a latency figure depends on: the machine (environment key) and the tool versions.

The environment key holds only what changes timings and stays put between CI runs on the same
machine class: CPU model, logical cores, threads used, OS, and the GPU when there is one. It leaves
out the host name and kernel build (unlike pytest-benchmark's machine_info), so two runners of one
CI pool share baselines. GPU detection asks `nvidia-smi` lazily and returns nothing without one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess

_CPUINFO = "/proc/cpuinfo"
# Distribution names per tool; the first one installed wins (onnxruntime-gpu replaces onnxruntime).
_TOOL_DISTRIBUTIONS = {
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "tensorrt_rtx": ("tensorrt-rtx-cu12", "tensorrt-rtx-cu13", "tensorrt-rtx"),
    "polygraphy": ("polygraphy",),
    "onnx2trt_check": ("onnx2trt_check",),
}


def environment_key(*, threads: int = 0) -> dict:
    """The machine a latency was measured on. `threads` is the intra-op thread count the session
    used; 0 means the runtime chose. Defaults to 0. `gpu` is None without a visible NVIDIA GPU."""
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count() or 0,
        "threads": threads,
        "os": f"{platform.system()} {platform.machine()}",
        "gpu": gpu_info(),
    }


def environment_id(env: dict) -> str:
    """A stable 12-hex-digit hash of an environment key, for file names."""
    canonical = json.dumps(env, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def gpu_info() -> dict | None:
    """Name, driver and CUDA version of the first NVIDIA GPU, or None when there is none (or the
    driver tool fails: a broken driver must not crash a CPU run). Cached: asked once per process."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = _run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if not query:
        return None
    name, _, driver = query.splitlines()[0].partition(",")
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", _run([smi]) or "")
    return {"name": name.strip(), "driver": driver.strip(), "cuda": cuda.group(1) if cuda else None}


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def tool_versions() -> dict:
    """Installed versions of the tools a result depends on; None for a tool that is not installed."""
    return {tool: _installed_version(names) for tool, names in _TOOL_DISTRIBUTIONS.items()}


def _installed_version(distributions: tuple[str, ...]) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
