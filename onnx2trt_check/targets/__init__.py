"""Where a model runs, by name. `TARGETS` is the one ordered registry; `--target` picks from it."""

from __future__ import annotations

from ..errors import ConfigError
from .fp16 import Fp16EmulationTarget, OrtFp16Target
from .ort import OrtTarget
from .ort_int8 import OrtInt8Target
from .tensorrt import TRT_TARGETS

TARGETS = (OrtTarget(), OrtFp16Target(), Fp16EmulationTarget(), *TRT_TARGETS, OrtInt8Target())


def target_names() -> tuple[str, ...]:
    return tuple(t.name for t in TARGETS)


def get_target(name: str):
    for target in TARGETS:
        if target.name == name:
            return target
    raise ConfigError(f"unknown target '{name}'; choose from: {', '.join(target_names())}")


def select_targets(names: tuple[str, ...] | None) -> list:
    """The named targets, or by default every target that can run on this machine."""
    if names:
        return [get_target(n) for n in dict.fromkeys(names)]
    return [t for t in TARGETS if t.unavailable_reason() is None]


def left_out_by_default(names: tuple[str, ...] | None) -> dict[str, list[str]]:
    """The targets the default selection leaves out, by reason ({} when `names` selects): a default
    run on a machine without a GPU has no trt-* accuracy item, and said nothing about it (gate13)."""
    if names:
        return {}
    left: dict[str, list[str]] = {}
    for target in TARGETS:
        if reason := target.unavailable_reason():
            left.setdefault(reason, []).append(target.name)
    return left
