"""What fitting input data to the model's input types changed, said in the run's notes. data.fit
casts an array to its input's type when no value changes kind (float64 to float32, uint8 or bool to
float32, int32 to int64) and refuses what would wrap or overflow; the cast itself was silent, so
uint8 pixels 0..255 fed to a float input that expects 0..1 passed every check without a word."""

from __future__ import annotations

import numpy as np

from .model import InputSpec


def conversion_notes(raw, specs: list[InputSpec]) -> list[str]:
    """One note per input whose data (`raw`, a data.RawData) was given in another type than the input's:
    the two types, whether every value was kept, and for integer or bool data fed to a float input the
    range it holds."""
    if raw is None:
        return []
    by_input = {k: [v] for k, v in raw.arrays.items()} if raw.arrays is not None else {k: [f[k] for f in raw.feeds] for k in raw.feeds[0]}
    notes = []
    for spec in specs:
        arrays = by_input.get(spec.name) or []
        kinds = sorted({a.dtype.name for a in arrays if spec.dtype is not None and a.dtype != spec.dtype})
        if kinds:
            notes.append(f"input '{spec.name}': the data's {'/'.join(kinds)} converted to {np.dtype(spec.dtype).name} ({_how(arrays, spec)})")
    return notes


def _how(arrays: list[np.ndarray], spec: InputSpec) -> str:
    how = "every value kept" if all(_kept(a, spec.dtype) for a in arrays) else "rounded to the nearest value it holds"
    sized = [a for a in arrays if a.size]
    if np.issubdtype(spec.dtype, np.floating) and sized and not all(np.issubdtype(a.dtype, np.floating) for a in sized):
        low, high = min(a.min().item() for a in sized), max(a.max().item() for a in sized)
        how += f"; the model sees {low:g}..{high:g}: normalize the data first if it expects another range"
    return how


def _kept(array: np.ndarray, dtype) -> bool:
    """Every value survives the cast (data.fit refused integers that wrap and floats that overflow)."""
    if np.can_cast(array.dtype, dtype, casting="safe"):
        return True
    cast = array.astype(dtype)
    back = cast.astype(array.dtype)
    return bool(np.all(((back == array) & ((array < 0) == (cast < 0))) | (np.isnan(array) if array.dtype.kind == "f" else False)))
