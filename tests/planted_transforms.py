"""A registered transform with a planted fault: its results, where it changed the model, passed
through `change`, so a test can show which verification catches a wrong result."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import onnx

from onnx2trt_check.transforms import registry


def plant_in_transform(monkeypatch, name: str, change: Callable[[onnx.ModelProto], onnx.ModelProto]) -> None:
    """Registry entry `name` as registered, its modified results' models replaced by `change(model)`."""
    entries = list(registry.TRANSFORMS)
    index = next(i for i, e in enumerate(entries) if e.name == name)
    inner = entries[index].function

    def planted(proto, **options):
        result = inner(proto, **options)
        return dataclasses.replace(result, model=change(result.model)) if result.modified else result

    entries[index] = entries[index]._replace(function=planted)
    monkeypatch.setattr(registry, "TRANSFORMS", tuple(entries))
