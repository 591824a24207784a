"""Input feeds for a model: generated (seeded), from a .npz file, or from a data-loader script.

A feed is a dict {input name: array}. Every source is validated against the model's input specs so
that a mismatch is a one-line `InputDataError` naming the input and the fix, never an ORT traceback.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import InputDataError
from .model import InputSpec

Feed = dict[str, np.ndarray]

# Polygraphy's default data loader draws from [0, 1] as well; a model that needs another range
# (raw pixels, token ids) gets it with --input-range.
DEFAULT_RANGE = (0.0, 1.0)
DEFAULT_LOADER_FUNCTION = "load_data"  # Polygraphy's data-loader-script convention


@dataclasses.dataclass(frozen=True)
class FeedOptions:
    """How to make feeds. `ranges` maps an input name (or '*' for all) to (low, high)."""

    seed: int = 0
    num_feeds: int = 4
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    npz: Path | None = None
    data_loader: str | None = None

    @property
    def source(self) -> str:
        if self.npz:
            return f"npz:{self.npz}"
        if self.data_loader:
            return f"data-loader:{self.data_loader}"
        return f"random(seed={self.seed}, n={self.num_feeds})"


def make_feeds(specs: list[InputSpec], options: FeedOptions) -> list[Feed]:
    if options.npz and options.data_loader:
        raise InputDataError("--inputs and --data-loader are both given; choose one source of input data")
    if options.npz:
        return feeds_from_npz(options.npz, specs)
    if options.data_loader:
        return feeds_from_loader(options.data_loader, specs)
    return random_feeds(specs, seed=options.seed, count=options.num_feeds, ranges=options.ranges)


def random_feeds(specs: list[InputSpec], *, seed: int, count: int, ranges: Mapping[str, tuple[float, float]]) -> list[Feed]:
    """`count` feeds drawn from one seeded generator, so the same seed gives the same data."""
    unknown = set(ranges) - {s.name for s in specs} - {"*"}
    if unknown:
        raise InputDataError(f"--input-range names '{sorted(unknown)[0]}', which is not an input; inputs: {_names(specs)}")
    rng = np.random.default_rng(seed)
    return [{s.name: _random_array(rng, s, ranges.get(s.name, ranges.get("*", DEFAULT_RANGE))) for s in specs} for _ in range(count)]


def _random_array(rng: np.random.Generator, spec: InputSpec, value_range: tuple[float, float]) -> np.ndarray:
    low, high = value_range
    dtype = _generatable_dtype(spec)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=spec.shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        low, high = int(np.ceil(low)), int(np.floor(high))
        if low > high:
            raise InputDataError(f"the range {value_range} of integer input '{spec.name}' holds no integer; widen it with --input-range {spec.name}:LOW,HIGH")
        return rng.integers(low, high + 1, size=spec.shape, dtype=dtype)
    return rng.uniform(low, high, size=spec.shape).astype(dtype)


def _generatable_dtype(spec: InputSpec) -> np.dtype:
    dtype = spec.dtype
    if dtype is None or dtype.kind not in "biuf":  # bfloat16/fp8 (ml_dtypes) have kind "V"
        raise InputDataError(
            f"input '{spec.name}' has type {spec.onnx_type}, for which no random data can be generated; "
            "pass real data with --inputs data.npz or --data-loader file.py"
        )
    return dtype


def source_file(source: str | Path) -> Path:
    """The file behind a data source: the .npz, or the script of `file.py:func`."""
    text = str(source)
    return Path(text.rpartition(".py:")[0] + ".py") if ".py:" in text else Path(text)


def read_feeds(source: str | Path, specs: list[InputSpec]) -> list[Feed]:
    """Feeds from a .npz file or a data-loader script (`file.py[:func]`): what every option that
    takes input data (--inputs, --calibration-data, ...) accepts."""
    text = str(source)
    if text.endswith(".py") or ".py:" in text:
        return feeds_from_loader(text, specs)
    return feeds_from_npz(Path(text), specs)


def feeds_from_npz(path: Path, specs: list[InputSpec]) -> list[Feed]:
    """Keys are input names; an array shaped like the input is one feed, one with an extra leading
    axis is one feed per slice."""
    arrays = _read_npz(Path(path))
    _check_names(arrays.keys(), specs, source=f"'{path}'")
    per_input = {s.name: _split_feeds(arrays[s.name], s, source=f"'{path}'") for s in specs}
    counts = {name: len(slices) for name, slices in per_input.items()}
    if len(set(counts.values())) > 1:
        raise InputDataError(f"arrays in '{path}' hold different numbers of feeds {counts}; give every input the same leading count")
    count = next(iter(counts.values()), 0)
    return [{name: slices[i] for name, slices in per_input.items()} for i in range(count)]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputDataError(f"input data file '{path}' does not exist; check the --inputs path")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, Mapping):
                raise InputDataError(f"'{path}' holds a single array, not named arrays; save it with numpy.savez(path, input_name=array)")
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        # numpy's own message for a non-zip file talks about pickles, which misleads here
        raise InputDataError(f"'{path}' is not a readable .npz archive; write it with numpy.savez(path, input_name=array)") from None


def _check_names(keys: Iterable[str], specs: list[InputSpec], *, source: str) -> None:
    keys = set(keys)
    names = {s.name for s in specs}
    if extra := sorted(keys - names):
        raise InputDataError(f"{source} has array '{extra[0]}', which is not an input of the model; inputs: {_names(specs)}")
    if missing := sorted(names - keys):
        raise InputDataError(f"{source} has no array for input '{missing[0]}'; add it (keys must be input names: {_names(specs)})")


def _split_feeds(array: np.ndarray, spec: InputSpec, *, source: str) -> list[np.ndarray]:
    if _fits(array.shape, spec):
        return [_cast(array, spec, source)]
    if array.ndim == len(spec.shape) + 1 and _fits(array.shape[1:], spec):
        return [_cast(a, spec, source) for a in array]
    raise InputDataError(
        f"{source}: array '{spec.name}' has shape {list(array.shape)}, but the input is {list(spec.shape)}; give one feed "
        f"shaped {list(spec.shape)} or a stack shaped [N, {', '.join(map(str, spec.shape))}]"
    )


def _fits(shape: tuple[int, ...], spec: InputSpec) -> bool:
    """Shape matches the spec; a defaulted (dynamic) batch dim accepts any size."""
    if len(shape) != len(spec.shape):
        return False
    return all(a == b or (i == 0 and spec.defaulted) for i, (a, b) in enumerate(zip(shape, spec.shape)))


def _cast(array: np.ndarray, spec: InputSpec, source: str) -> np.ndarray:
    if spec.dtype is None or array.dtype == spec.dtype:
        return np.ascontiguousarray(array)
    if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
        raise InputDataError(f"{source}: array '{spec.name}' is {array.dtype}, the input is {spec.onnx_type}; convert it before saving")
    return np.ascontiguousarray(array.astype(spec.dtype))


def feeds_from_loader(reference: str, specs: list[InputSpec]) -> list[Feed]:
    """`file.py[:func]`: call `func` (default `load_data`) and take the feed dicts it yields."""
    function = _load_function(reference)
    feeds = []
    for index, feed in enumerate(function()):
        if not isinstance(feed, Mapping):
            raise InputDataError(f"data loader '{reference}' yielded a {type(feed).__name__} at #{index}; yield dicts {{input name: array}}")
        _check_names(feed.keys(), specs, source=f"data loader '{reference}' feed #{index}")
        feeds.append({s.name: _one_feed(np.asarray(feed[s.name]), s, reference, index) for s in specs})
    if not feeds:
        raise InputDataError(f"data loader '{reference}' yielded no feeds; make it yield at least one dict")
    return feeds


def _one_feed(array: np.ndarray, spec: InputSpec, reference: str, index: int) -> np.ndarray:
    source = f"data loader '{reference}' feed #{index}"
    if not _fits(array.shape, spec):
        raise InputDataError(f"{source}: '{spec.name}' has shape {list(array.shape)}, the input is {list(spec.shape)}")
    return _cast(array, spec, source)


def _load_function(reference: str):
    path_text, _, name = reference.partition(":")
    if reference.count(":") > 1 or (len(path_text) == 1 and name):  # a Windows drive letter
        path_text, _, name = reference.rpartition(":")
    path, name = Path(path_text), name or DEFAULT_LOADER_FUNCTION
    if not path.is_file():
        raise InputDataError(f"data loader script '{path}' does not exist; pass --data-loader file.py[:function]")
    spec = importlib.util.spec_from_file_location(f"onnx2trt_check_loader_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's script: any failure is theirs to fix, shown in one line
        raise InputDataError(f"data loader script '{path}' failed to import: {type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise InputDataError(f"data loader script '{path}' has no function '{name}'; define it or name another with {path}:function")
    return function


def parse_range(text: str) -> tuple[str, tuple[float, float]]:
    """'images:0,255' -> ('images', (0.0, 255.0)); '0,255' applies to every input ('*')."""
    name, _, values = text.rpartition(":")
    try:
        low, high = (float(v) for v in values.split(","))
    except ValueError:
        low = high = None
    if low is None or not low < high:
        raise InputDataError(f"--input-range '{text}' is malformed; write [NAME:]LOW,HIGH with LOW < HIGH, e.g. images:0,255")
    return name or "*", (low, high)


def _names(specs: list[InputSpec]) -> str:
    return ", ".join(s.name for s in specs) or "none"
