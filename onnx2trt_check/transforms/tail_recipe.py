"""Post-processing recipes: the steps that restore an output whose trailing Transpose, Reshape,
Flatten, Squeeze, Unsqueeze or upsampling Resize was removed from the graph (output_tail.py).

A recipe is a list of JSON-ready steps applied in order to the new output:

    {"op": "transpose", "perm": [0, 2, 3, 1]}
    {"op": "reshape", "shape": [0, -1], "allowzero": 0}          ONNX Reshape semantics (0 copies a dim)
    {"op": "flatten", "axis": 1}
    {"op": "squeeze", "axes": [2, 3]}                             axes null: every dim of size 1
    {"op": "unsqueeze", "axes": [0]}
    {"op": "resize", "mode": "nearest" | "linear", "scales": [1, 1, 2, 2],
     "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor"}

`apply_recipe` is the reference implementation in numpy, written from the ONNX operator definitions
(Resize: output coordinate o maps to x = f(o) by the coordinate transformation mode, then nearest
rounds x and linear interpolates between floor(x) and floor(x) + 1, both clipped to the input).
Nothing in numpy or onnx.reference offers Resize as a plain function with these modes, hence by
hand; the transform's verification compares its result with ONNX Runtime's Resize on every output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# Coordinate modes whose map from output to input index is known here. tf_crop_and_resize reads
# an roi and is left in the graph.
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def apply_recipe(steps: list[dict], array: np.ndarray) -> np.ndarray:
    """The old output from the new one: every step of the recipe in order."""
    for step in steps:
        array = _APPLY[step["op"]](step, np.asarray(array))
    return array


def _transpose(step: dict, array: np.ndarray) -> np.ndarray:
    return np.transpose(array, step["perm"])


def _reshape(step: dict, array: np.ndarray) -> np.ndarray:
    shape = [array.shape[i] if d == 0 and not step.get("allowzero", 0) else d for i, d in enumerate(step["shape"])]
    return np.reshape(array, shape)


def _flatten(step: dict, array: np.ndarray) -> np.ndarray:
    axis = step["axis"] + array.ndim if step["axis"] < 0 else step["axis"]  # ONNX allows 0..rank (and -rank..-1)
    return np.reshape(array, (math.prod(array.shape[:axis]), math.prod(array.shape[axis:])))


def _squeeze(step: dict, array: np.ndarray) -> np.ndarray:
    return np.squeeze(array) if step["axes"] is None else np.squeeze(array, axis=tuple(step["axes"]))


def _unsqueeze(step: dict, array: np.ndarray) -> np.ndarray:
    return np.expand_dims(array, axis=tuple(step["axes"]))


def _resize(step: dict, array: np.ndarray) -> np.ndarray:
    result = array.astype(np.float64) if step["mode"] == "linear" else array
    for axis, scale in enumerate(step["scales"]):
        if scale != 1:
            result = _resize_axis(result, axis, int(scale), step)
    return result.astype(array.dtype)


def _resize_axis(array: np.ndarray, axis: int, scale: int, step: dict) -> np.ndarray:
    size = array.shape[axis]
    x = source_coordinates(size, scale, step["coordinate_transformation_mode"])
    if step["mode"] == "nearest":
        return np.take(array, np.clip(round_nearest(x, step["nearest_mode"]), 0, size - 1), axis=axis)
    x = np.clip(x, 0, size - 1)
    low = np.floor(x).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    weight = (x - low).reshape([-1 if a == axis else 1 for a in range(array.ndim)])
    return np.take(array, low, axis=axis) * (1 - weight) + np.take(array, high, axis=axis) * weight


def source_coordinates(size: int, scale: int, mode: str) -> np.ndarray:
    """x_original of every output index along one axis of length size * scale (ONNX Resize)."""
    out = np.arange(size * scale, dtype=np.float64)
    if mode in ("half_pixel", "half_pixel_symmetric"):  # symmetric: no offset when out = scale * in exactly
        return (out + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (out + 0.5) / scale - 0.5 if size * scale > 1 else np.zeros_like(out)
    if mode == "align_corners":
        return out * (size - 1) / (size * scale - 1) if size * scale > 1 else np.zeros_like(out)
    if mode == "asymmetric":
        return out / scale
    raise ValueError(f"coordinate_transformation_mode {mode!r} is not one of {COORDINATE_MODES}")


def round_nearest(x: np.ndarray, mode: str) -> np.ndarray:
    """Resize's nearest_mode: round half down or up, floor, or ceil."""
    floor = np.floor(x)
    if mode == "round_prefer_floor":
        rounded = np.where(x - floor == 0.5, floor, np.floor(x + 0.5))
    elif mode == "round_prefer_ceil":
        rounded = np.where(x - floor == 0.5, floor + 1, np.floor(x + 0.5))
    elif mode == "floor":
        rounded = floor
    elif mode == "ceil":
        rounded = np.ceil(x)
    else:
        raise ValueError(f"nearest_mode {mode!r} is not one of {NEAREST_MODES}")
    return rounded.astype(np.int64)


_APPLY = {"transpose": _transpose, "reshape": _reshape, "flatten": _flatten, "squeeze": _squeeze,
          "unsqueeze": _unsqueeze, "resize": _resize}


def is_exact(steps: list[dict]) -> bool:
    """Whether the recipe only moves elements (bit-exact); a linear Resize interpolates."""
    return not any(step["op"] == "resize" and step["mode"] == "linear" for step in steps)


def describe(step: dict) -> str:
    """One step in words, for the command's output."""
    if step["op"] == "transpose":
        return f"transpose perm {tuple(step['perm'])}"
    if step["op"] == "reshape":
        return f"reshape to {list(step['shape'])}" + (" (allowzero)" if step.get("allowzero") else "")
    if step["op"] == "flatten":
        return f"flatten at axis {step['axis']}"
    if step["op"] in ("squeeze", "unsqueeze"):
        return f"{step['op']} axes {step['axes'] if step['axes'] is not None else 'of size 1'}"
    detail = step["coordinate_transformation_mode"] + (f", {step['nearest_mode']}" if step["mode"] == "nearest" else "")
    return f"resize {step['mode']} x{tuple(int(s) for s in step['scales'])} ({detail})"


# --- the recipe file written beside an optimized model ---------------------------------------------

RECIPE_KIND = "postprocessing_recipe"
RECIPE_SCHEMA_VERSION = 1


def recipe_path(model_path) -> Path:
    """Where the recipe of `model_path` goes: OUT.onnx -> OUT.recipe.json."""
    path = Path(model_path)
    return path.with_name(f"{path.stem if path.suffix == '.onnx' else path.name}.recipe.json")


def recipe_document(report, *, model_file: str) -> dict:
    """The JSON document of output_tail's report: per output the steps that restore it, its old and
    new shape, whether it is bit-exact; and what was left in the graph, with the reasons."""
    return {
        "tool": "onnx2trt_check", "kind": RECIPE_KIND, "schema_version": RECIPE_SCHEMA_VERSION, "model": model_file,
        "apply": "onnx2trt_check.transforms.tail_recipe.apply_recipe(steps, new_output) gives the old output; "
                 "steps run in order on the output of the optimized model",
        "outputs": report.figures.get("recipes", {}),
        "left_in_graph": [{"nodes": list(skip.nodes), "reason": skip.reason} for skip in report.skips],
    }


def is_recipe_file(path) -> bool:
    """Whether `path` is a recipe this tool wrote (so a stale one may be replaced with --force)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("kind") == RECIPE_KIND
    except (OSError, ValueError, AttributeError):
        return False
