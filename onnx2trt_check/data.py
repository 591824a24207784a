"""Input feeds for a model: generated (seeded), from a .npz file, or from a data-loader script.

A feed is a dict {input name: array}. A data source is read once (`read_source`: the file and the
loader are the user's, so every failure is a one-line InputDataError naming the option and the
fix), then fitted to each model's inputs (`fit`: names, shapes, dtypes). Data with no samples is an
error, never an empty check. Dims a model leaves open are settled by the data when it fixes them
(`data_shapes`, model.resolve_input_specs).

Limits, so no input makes the run exhaust memory: generated feeds may hold at most MAX_FEED_BYTES
in all; a data loader is drawn at most MAX_LOADER_FEEDS feeds or MAX_FEED_BYTES (an endless
generator is fine), and the summary notes when the cap stopped it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx

from .calibration_data import check_values
from .errors import InputDataError, first_line
from .model import InputSpec, Shapes, graph_inputs, resolve_input_specs
from .npz import read_npz
from .validate import idle_beside, not_empty

Feed = dict[str, np.ndarray]

# Polygraphy's default data loader draws from [0, 1] as well; a model that needs another range
# (token ids) gets it with --input-range. A uint8 input is a raw image nearly always (a camera
# frame, a decoded JPEG): drawn from 0..1 it was a black image, and every check passed on it.
DEFAULT_RANGE = (0.0, 1.0)
UINT8_RANGE = (0.0, 255.0)
DEFAULT_SEED = 0
DEFAULT_NUM_FEEDS = 4
DEFAULT_LOADER_FUNCTION = "load_data"  # Polygraphy's data-loader-script convention
MAX_LOADER_FEEDS = 1000
MAX_FEED_BYTES = 2 * 2**30
_END = object()

# In a data option (--inputs models/{model}.npz), the file name of the model being checked without
# its .onnx: a folder of models each with its own data, in one run.
MODEL_FIELD = "{model}"


def cap_note(raw: RawData | None) -> str:
    """What a report adds after a loader's feed count when the cap stopped it (an endless generator)."""
    return f" (the loader was stopped at the cap of {MAX_LOADER_FEEDS} feeds or 2 GiB)" if raw is not None and raw.capped else ""


def is_template(source) -> bool:
    return source is not None and MODEL_FIELD in str(source)


def for_model(value, model: Path):
    """An option value as it applies to `model`: a path or text with {model} filled in, an object
    that depends on the model (its `for_model(model)`), anything else as it is."""
    if hasattr(value, "for_model"):
        return value.for_model(model)
    if isinstance(value, str | Path) and is_template(value):
        return type(value)(str(value).replace(MODEL_FIELD, Path(model).stem))
    return value


@dataclasses.dataclass(frozen=True)
class RawData:
    """Input data as its source gave it, not yet fitted to a model: `arrays` of an .npz (one feed
    or a stack per input), or the `feeds` a loader yielded. `capped`: the loader was stopped at
    the cap."""

    label: str
    option: str
    arrays: dict[str, np.ndarray] | None = None
    feeds: list[dict[str, np.ndarray]] | None = None
    capped: bool = False


@dataclasses.dataclass(frozen=True)
class FeedOptions:
    """How to make feeds. `ranges` maps an input name (or '*' for all) to (low, high). `raw` is the
    --inputs/--data-loader source once read (read_source); None reads it on use."""

    seed: int = DEFAULT_SEED
    num_feeds: int = DEFAULT_NUM_FEEDS
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    npz: Path | None = None
    data_loader: str | None = None
    raw: RawData | None = None

    def __post_init__(self):
        # Beside data these changed nothing and the run said nothing (`--num-feeds 2 --inputs x.npz` ran all of x.npz).
        if self.npz or self.data_loader:
            given = {"--seed": self.seed != DEFAULT_SEED, "--num-feeds": self.num_feeds != DEFAULT_NUM_FEEDS, "--input-range": bool(self.ranges)}
            idle_beside(given, "--inputs" if self.npz else "--data-loader", "they shape generated inputs, and the data gives every feed")

    @property
    def source(self) -> str:
        if self.npz:
            return f"npz:{self.npz}"
        if self.data_loader:
            return f"data-loader:{self.data_loader}"
        return f"random(seed={self.seed}, n={self.num_feeds})"

    @property
    def templated(self) -> bool:
        """The source names a file per model ({model}): read for each model, not once per run."""
        return is_template(self.npz) or is_template(self.data_loader)

    def for_model(self, model: Path) -> FeedOptions:
        if not self.templated:
            return self
        return dataclasses.replace(self, npz=for_model(self.npz, model), data_loader=for_model(self.data_loader, model), raw=None)

    def read(self) -> RawData | None:
        """The --inputs or --data-loader data, read now unless it was read already."""
        if self.npz and self.data_loader:
            raise InputDataError("--inputs and --data-loader are both given; choose one source of input data")
        if self.raw is not None or not (self.npz or self.data_loader):
            return self.raw
        return read_source(self.npz or self.data_loader, "--inputs" if self.npz else "--data-loader")


def model_feeds(proto: onnx.ModelProto, options: FeedOptions, overrides: Shapes | None = None) -> tuple[list[InputSpec], list[Feed]]:
    """The model's input specs (open dims settled by --input-shape, then the data) and its feeds."""
    raw = options.read()
    specs = resolve_input_specs(proto, overrides, data_shapes=data_shapes(raw, proto) if raw else None)
    if raw is not None:
        return specs, fit(raw, specs, proto=proto)
    return specs, random_feeds(specs, seed=options.seed, count=options.num_feeds, ranges=options.ranges)


def make_feeds(specs: list[InputSpec], options: FeedOptions) -> list[Feed]:
    raw = options.read()
    if raw is not None:
        return fit(raw, specs)
    return random_feeds(specs, seed=options.seed, count=options.num_feeds, ranges=options.ranges)


def random_feeds(specs: list[InputSpec], *, seed: int, count: int, ranges: Mapping[str, tuple[float, float]]) -> list[Feed]:
    """`count` feeds drawn from one seeded generator, so the same seed gives the same data."""
    unknown = set(ranges) - {s.name for s in specs} - {"*"}
    if unknown:
        raise InputDataError(f"--input-range names '{sorted(unknown)[0]}', which is not an input; inputs: {_names(specs)}")
    _check_budget(specs, count)
    rng = np.random.default_rng(seed)
    return [{s.name: _random_array(rng, s, ranges.get(s.name, ranges.get("*", default_range(s)))) for s in specs} for _ in range(count)]


def default_range(spec: InputSpec) -> tuple[float, float]:
    """0..255 for a uint8 input (pixels), else 0..1."""
    return UINT8_RANGE if spec.dtype == np.uint8 else DEFAULT_RANGE


def default_range_notes(specs: list[InputSpec], options: FeedOptions) -> list[str]:
    """Integer inputs drawn from a default range (0..1; 0..255 for uint8): an embedding or index
    input then sees two values only, and a pass says little about the rest; the summary says so."""
    if options.npz or options.data_loader or "*" in options.ranges:
        return []
    return [f"input '{s.name}': integer values drawn from {default_range(s)[0]:g}..{default_range(s)[1]:g} (the default range"
            f"{' of a uint8 input: pixels' if s.dtype == np.uint8 else ''}); for ids or indices give their real range: --input-range {s.name}:LOW,HIGH"
            for s in specs if s.dtype is not None and s.dtype.kind in "iu" and s.name not in options.ranges]


def _check_budget(specs: list[InputSpec], count: int) -> None:
    per_feed = sum(int(np.prod(s.shape, dtype=np.float64)) * (s.dtype.itemsize if s.dtype is not None else 1) for s in specs)
    if per_feed * count > MAX_FEED_BYTES:
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
        raise InputDataError(
            f"{count} generated feed(s) of {per_feed / 2**20:.4g} MiB each ({shapes}) exceed the {MAX_FEED_BYTES / 2**30:g} GiB "
            "limit on input data; lower --num-feeds or the --input-shape sizes"
        )


def _random_array(rng: np.random.Generator, spec: InputSpec, value_range: tuple[float, float]) -> np.ndarray:
    low, high = value_range
    dtype = _generatable_dtype(spec)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=spec.shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        low, high = max(int(np.ceil(low)), info.min), min(int(np.floor(high)), info.max)
        if low > high:
            raise InputDataError(f"the range {value_range} of integer input '{spec.name}' holds no integer of its type {spec.onnx_type}; widen it with --input-range {spec.name}:LOW,HIGH")
        return rng.integers(low, high, size=spec.shape, dtype=dtype, endpoint=True)
    finite = float(np.finfo(dtype).max)
    if not -finite <= low <= high <= finite:  # cast to the input's type, the values would be inf
        raise InputDataError(f"the range {value_range} of input '{spec.name}' exceeds its type {spec.onnx_type} (largest finite "
                             f"value {finite:g}); give a range inside it with --input-range {spec.name}:LOW,HIGH")
    return rng.uniform(low, high, size=spec.shape).astype(dtype)


def _generatable_dtype(spec: InputSpec) -> np.dtype:
    dtype = spec.dtype
    if dtype is None or dtype.kind not in "biuf":  # bfloat16/fp8 (ml_dtypes) have kind "V"
        raise InputDataError(
            f"input '{spec.name}' has type {spec.onnx_type}, for which no random data can be generated; "
            "pass real data with --inputs data.npz or --data-loader file.py"
        )
    return dtype


# ---------------------------------------------------------------------------------- reading a source


def source_file(source: str | Path) -> Path:
    """The file behind a data source: the .npz, or the script of `file.py:func`."""
    text = str(source)
    return Path(text.rpartition(".py:")[0] + ".py") if ".py:" in text else Path(text)


def is_loader(source: str | Path) -> bool:
    text = str(source)
    return text.endswith(".py") or ".py:" in text


def read_source(source: str | Path, option: str) -> RawData:
    """The data of a .npz file or a data-loader script (`file.py[:func]`), checked for everything
    that does not depend on a model: readable, named arrays of numbers, at least one sample."""
    not_empty(source, option)
    if is_loader(source):
        raw = _draw(str(source), option)
    else:
        raw = RawData(f"'{source}'", option, arrays=read_npz(Path(source), option))
    # An empty leading axis (no feeds, or a feed of batch 0) compares nothing; an empty dim after
    # it is data: the empty past of a KV-cache decoder's first step. A 0-d array is one feed of a
    # scalar input (a diffusion model's timestep): it was refused as "holds no samples" (redteam19).
    for name, array in [*(raw.arrays or {}).items(), *(item for feed in raw.feeds or () for item in feed.items())]:
        if array.ndim and array.shape[0] == 0:
            raise InputDataError(f"{option} {raw.label}: array '{name}' has shape {list(array.shape)}, which holds no samples; give at least one feed")
    return raw


def read_feeds(source: str | Path, specs: list[InputSpec], *, option: str = "--calibration-data") -> list[Feed]:
    """Feeds from a .npz file or a data-loader script: what every option that takes input data
    (--inputs, --calibration-data, ...) accepts; `option` names it in messages. Defaults to
    --calibration-data."""
    return fit(read_source(source, option), specs)


def data_shapes(raw: RawData, proto: onnx.ModelProto) -> Shapes:
    """One feed's shape per input as the data gives it: an .npz array of the input's rank is one
    feed, one of rank + 1 a stack of feeds; a loader's first feed."""
    if raw.feeds is not None:
        return {name: np.shape(array) for name, array in raw.feeds[0].items()}
    shapes = {}
    for value in graph_inputs(proto):
        array = raw.arrays.get(value.name)
        if array is None:
            continue
        rank = len(value.type.tensor_type.shape.dim) if value.type.tensor_type.HasField("shape") else array.ndim
        shapes[value.name] = array.shape[1:] if array.ndim == rank + 1 else array.shape
    return shapes


# ---------------------------------------------------------------------------------- fitting to a model


def fit(raw: RawData, specs: list[InputSpec], *, proto: onnx.ModelProto | None = None) -> list[Feed]:
    """The data as feeds of the model's inputs: names, shapes and dtypes checked, then their values
    (calibration_data.check_values; `proto` is the model, whose ops may read NaN/inf as data)."""
    feeds = _fit(raw, specs)
    check_values(raw.option, feeds, f"{raw.option} {raw.label}", proto)
    return feeds


def _fit(raw: RawData, specs: list[InputSpec]) -> list[Feed]:
    source = f"{raw.option} {raw.label}"
    if raw.feeds is not None:
        return [_fit_feed(feed, specs, f"{source} feed #{index}") for index, feed in enumerate(raw.feeds)]
    _check_names(raw.arrays.keys(), specs, source=source)
    per_input = {s.name: _split_feeds(raw.arrays[s.name], s, source=source) for s in specs}
    counts = {name: len(slices) for name, slices in per_input.items()}
    if len(set(counts.values())) > 1:
        raise InputDataError(f"arrays of {source} hold different numbers of feeds {counts}; give every input the same leading count")
    count = next(iter(counts.values()), 0)
    return [{name: slices[i] for name, slices in per_input.items()} for i in range(count)]


def feeds_from_npz(path: Path, specs: list[InputSpec], *, option: str = "--inputs") -> list[Feed]:
    """Keys are input names; an array shaped like the input is one feed, one with an extra leading
    axis is one feed per slice."""
    return fit(RawData(f"'{path}'", option, arrays=read_npz(Path(path), option)), specs)


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
    """Shape matches the spec; a dim the model leaves open (and --input-shape did not fix) accepts
    any size."""
    if len(shape) != len(spec.shape):
        return False
    return all(a == b or i in spec.flexible for i, (a, b) in enumerate(zip(shape, spec.shape)))


def _cast(array: np.ndarray, spec: InputSpec, source: str) -> np.ndarray:
    if spec.dtype is None or array.dtype == spec.dtype:
        return np.ascontiguousarray(array)
    if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
        raise InputDataError(f"{source}: array '{spec.name}' is {array.dtype}, the input is {spec.onnx_type}; convert it before saving")
    with np.errstate(over="ignore", invalid="ignore"):  # what overflowed is reported below
        cast = np.ascontiguousarray(array.astype(spec.dtype))
    _check_values_kept(array, cast, spec, source)
    return cast


def _check_values_kept(array: np.ndarray, cast: np.ndarray, spec: InputSpec, source: str) -> None:
    """A narrowing cast must not change what the data says: int64 2**40 wraps to 0 in int32, and
    1e6 becomes inf in float16, so the checks would run on data the user never gave."""
    if np.issubdtype(cast.dtype, np.integer):
        # The round trip misses a wrap between types of one width (uint8 200 -> int8 -56 -> uint8 200): the sign tells it.
        changed = (cast.astype(array.dtype) != array) | ((array < 0) != (cast < 0))
    else:
        changed = np.isinf(cast) & np.isfinite(array)
    if np.any(changed):
        example = array[changed].flat[0].item()
        raise InputDataError(f"{source}: array '{spec.name}' holds {example}, which the input's type {spec.onnx_type} cannot hold "
                             f"({int(np.count_nonzero(changed))} such value(s)); fix the data or the model's input type")


def _fit_feed(feed: Mapping[str, np.ndarray], specs: list[InputSpec], source: str) -> Feed:
    _check_names(feed.keys(), specs, source=source)
    fitted = {}
    for spec in specs:
        array = feed[spec.name]
        if not _fits(array.shape, spec):
            raise InputDataError(f"{source}: '{spec.name}' has shape {list(array.shape)}, the input is {list(spec.shape)}")
        fitted[spec.name] = _cast(array, spec, source)
    return fitted


# ---------------------------------------------------------------------------------- data loaders


def feeds_from_loader(reference: str, specs: list[InputSpec], *, option: str = "--data-loader") -> list[Feed]:
    """`file.py[:func]`: call `func` (default `load_data`) and take the feed dicts it yields."""
    return fit(_draw(reference, option), specs)


def _draw(reference: str, option: str) -> RawData:
    """Call the loader and draw its feeds, up to the cap. Anything the user's code does wrong
    (raises, exits, returns None or non-dicts) is one line naming the loader."""
    function = _load_function(reference, option)
    label = f"data loader '{reference}'"
    iterator = _iterate(_call(function, label, "when called"), label)
    feeds, total = [], 0
    try:
        while len(feeds) < MAX_LOADER_FEEDS and total <= MAX_FEED_BYTES:
            feed = _call(lambda: next(iterator, _END), label, f"while yielding feed #{len(feeds)}")
            if feed is _END:
                break
            feeds.append(_as_arrays(feed, label, len(feeds)))
            total += sum(a.nbytes for a in feeds[-1].values())
    finally:
        getattr(iterator, "close", lambda: None)()
    if not feeds:
        raise InputDataError(f"{label} yielded no feeds; make it yield at least one dict {{input name: array}}")
    capped = len(feeds) == MAX_LOADER_FEEDS or total > MAX_FEED_BYTES
    return RawData(label, option, feeds=feeds, capped=capped)


def _call(function, label: str, when: str):
    try:
        return function()
    except SystemExit as exc:
        raise InputDataError(f"{label} called sys.exit({exc.code}) {when}; make it return or yield feed dicts") from None
    except Exception as exc:  # the user's code: its own message, in one line
        raise InputDataError(f"{label} raised {type(exc).__name__} {when}: {first_line(exc)}") from None


def _iterate(produced, label: str):
    if produced is None or isinstance(produced, Mapping | str | bytes):
        kind = "None" if produced is None else f"a {type(produced).__name__}"
        raise InputDataError(f"{label} returned {kind}; make it return a list of dicts {{input name: array}} or yield them")
    try:
        return iter(produced)
    except TypeError:
        raise InputDataError(f"{label} returned a {type(produced).__name__}, which is not iterable; return a list of feed dicts or yield them") from None


def _as_arrays(feed, label: str, index: int) -> dict[str, np.ndarray]:
    if not isinstance(feed, Mapping):
        raise InputDataError(f"{label} yielded a {type(feed).__name__} at #{index}; yield dicts {{input name: array}}")
    arrays = {}
    for name, value in feed.items():
        try:
            # A copy: a loader that refills one buffer per feed would otherwise leave N feeds
            # that are all its last one.
            arrays[name] = np.array(value, copy=True)
        except Exception as exc:  # any object the user yielded
            raise InputDataError(f"{label} feed #{index}: '{name}' is no array ({type(exc).__name__}: {first_line(exc)})") from None
        if arrays[name].dtype.hasobject or arrays[name].dtype.kind not in "biuf":
            raise InputDataError(f"{label} feed #{index}: '{name}' is a {arrays[name].dtype} array, not numbers; yield numeric arrays")
    return arrays


def _load_function(reference: str, option: str):
    path_text, _, name = reference.partition(":")
    if reference.count(":") > 1 or (len(path_text) == 1 and name):  # a Windows drive letter
        path_text, _, name = reference.rpartition(":")
    path, name = Path(path_text), name or DEFAULT_LOADER_FUNCTION
    if not path.is_file():
        raise InputDataError(f"{option}: data loader script '{path}' does not exist; pass {option} file.py[:function]")
    spec = importlib.util.spec_from_file_location(f"onnx2trt_check_loader_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's script: any failure is theirs to fix, shown in one line
        raise InputDataError(f"data loader script '{path}' failed to import: {type(exc).__name__}: {first_line(exc)}") from None
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
    if low is None or not np.isfinite([low, high, high - low]).all() or not low < high:
        raise InputDataError(f"--input-range '{text}' is malformed; write [NAME:]LOW,HIGH with finite LOW < HIGH, e.g. images:0,255")
    return name or "*", (low, high)


def _names(specs: list[InputSpec]) -> str:
    return ", ".join(s.name for s in specs) or "none"
