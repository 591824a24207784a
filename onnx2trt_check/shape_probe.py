"""Other input shapes than the data's: a model that leaves a dimension free is promised to run at
any size there, so a derived model or a transform result is also compared at a batch size and at
smaller and larger free dimensions the data does not have.

plant12: a derived model with `Reshape(logits, [2, -1])` (the traced batch kept) passed
`derived::parity` on batch-2 data, and a transform result with batch 1 baked into a Reshape was
verified and written by `optimize`; both fail, or silently compute something else, at any other
batch. The same holds for the other free dimensions: a derived model with its Resize fixed to the
data's 64x64, a BERT whose position embeddings were cut to the data's 32 tokens, a recurrent net
reading a fixed step. The data and the original are at hand, so no user information is needed:

* the batch (other_batch): feeds of batch B >= 2 give a batch of 1 (each row a feed), feeds
  of batch 1 stacked in pairs give a batch of 2 (a single feed is stacked with itself). Only a batch in the
  declared sense: every graph input's first dimension free (transforms.verify.declares_batch)
  and every feed holding the same size there, whatever the dims' names (the dynamo exporter names
  each input's batch by its own symbol, zoo13: `input_ids: [s33, s50]`, `attention_mask: [s6, s50]`;
  every input sliced or stacked alike keeps equal sizes equal);
* the other free dimensions (other_size): the feeds cropped, on every free dimension after the
  first, to a smaller size (size_below), the same for equal sizes, so dimensions that must agree
  (input_ids and attention_mask) still do; and the feeds grown there by the same step, at most a
  quarter of a large size (size_above: 224 -> 256, 32 tokens -> 48, 1024 -> 1280), each extended by
  its last position repeated (the last token or pixel row: no invented values, and a padded
  attention mask stays padded, with no hole; a position counter goes on counting, hunt18). A smaller size alone misses what serves every size up
  to the data's:
  review14, a BERT whose position table was cut to the data's 32 rows, read by
  Gather(table, Range(0, S)), agrees at 16 tokens and fails from 33 to the original's 64.

A model whose own run fails at such a shape does not have the freedom it declares (a sequence
length tied to a cache's, a UNet's skip needing a multiple of 32, a BERT at its maximum length
grown past its position table); that probe is then dropped and the caller says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from .transforms.verify import declares_batch

# Feeds a probe holds at most: it checks a shape, and its figures need several rows like the data's (a
# quantized BERT's lone row of 3 logits read 9.5 dB on its varying part, 16 rows 30.7 dB).
PROBE_FEEDS = 16


@dataclasses.dataclass(frozen=True)
class BatchProbe:
    """Feeds at another batch size than the data's, and how they were made."""

    feeds: list[dict[str, np.ndarray]]
    size: int
    data_size: int
    repeated: bool = False  # the only feed stacked with itself
    # Each probe feed's rows as (data feed, row) pairs: the rows it holds, as the data gave them.
    rows: tuple[tuple[tuple[int, int], ...], ...] = ()

    def describe(self) -> str:
        how = "each row of the feeds on its own" if self.size == 1 else "the only feed twice" if self.repeated else "feeds stacked in pairs"
        return f"batch {self.size} ({how}; the data's batch is {self.data_size} and the model declares its batch free)"


def other_batch(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> BatchProbe | None:
    """Feeds at another batch size than `feeds` have, or None where the model declares no batch or
    the feeds disagree on its size."""
    if not feeds or not declares_batch(model):
        return None
    sizes = {np.shape(array)[0] if np.ndim(array) else None for feed in feeds for array in feed.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    (size,) = sizes
    if size >= 2:  # each row on its own: one feed of batch 16 gave a lone row, an int8 model's false failure (review14)
        where = [(index, row) for index in range(min(len(feeds), PROBE_FEEDS)) for row in range(size)][:PROBE_FEEDS]
        rows = [{name: np.asarray(array)[row:row + 1] for name, array in feeds[index].items()} for index, row in where]
        return BatchProbe(rows, 1, size, rows=tuple((place,) for place in where))
    if size != 1:
        return None
    # Pairs of feeds of the same shapes, else the first one twice: equal rows still show a batch baked
    # into a shape (plant12's optimize case had one feed), though not rows mixed across the batch.
    pairs = [(i, i + 1) for i in range(0, min(len(feeds) - 1, 2 * PROBE_FEEDS), 2)
             if all(np.shape(feeds[i][n]) == np.shape(feeds[i + 1].get(n)) for n in feeds[i])] or [(0, 0)]
    stacked = [{name: np.concatenate([feeds[i][name], feeds[j][name]]) for name in feeds[i]} for i, j in pairs]
    return BatchProbe(stacked, 2, 1, pairs[0] == (0, 0), tuple(((i, 0), (j, 0)) for i, j in pairs))


@dataclasses.dataclass(frozen=True)
class SizeProbe:
    """The feeds cropped, or grown, on their free dimensions after the first: `sizes` holds, per
    dimension of the first feed (its dim_param, or input[axis] for one without a name), the data's
    size and the probe's."""

    feeds: list[dict[str, np.ndarray]]
    sizes: dict[str, tuple[int, int]]
    grown: bool = False
    counted: tuple[str, ...] = ()  # inputs that go on counting where grown (_counters)

    def describe(self) -> str:
        dims = ", ".join(f"{label} {old} -> {new}" for label, (old, new) in self.sizes.items())
        if self.grown:
            counted = f", position input(s) {', '.join(self.counted)} counting on" if self.counted else ""
            return f"larger free dimensions ({dims}; the feeds extended by their last position repeated{counted}, the model declares them free)"
        return f"smaller free dimensions ({dims}; the feeds cropped, the model declares them free)"


def size_below(size: int) -> int:
    """A smaller size that keeps as many factors of two as `size` has, up to half of it: 224 gives
    192 and 64 gives 32 (a net that downsamples by 32 still divides them), 32 tokens give 16, an odd
    size one less."""
    return size - min(size & -size, size // 2)


# The factors of two a grown size keeps at least: a net that downsamples by 32 still divides it.
KEPT_FACTOR = 32


def size_above(size: int) -> int:
    """A larger size by the step size_below takes off, so it keeps the same factors of two: 224 gives
    256, 96 gives 128, 32 tokens give 48, an odd size one more. A step, not a doubling (an image's
    attention memory grows with the square of its pixels), and on a large size at most a quarter of
    it, the step halved down to the largest power of two <= size / 4 but never below the factors of
    two up to KEPT_FACTOR it keeps: 1024 gives 1280, not 1536 (left16: 2.25x the pixels of the
    data's run, 16 feeds of them), 128 gives 160; a small power of two still grows by half (64 gives 96)."""
    step = size - size_below(size)  # a power of two that divides size
    quarter = 1 << ((size // 4).bit_length() - 1) if size >= 4 else 1
    return size + min(step, max(quarter, min(step, KEPT_FACTOR)))


def other_size(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], *, grow: bool = False) -> SizeProbe | None:
    """The feeds cropped (grown, with `grow`) on every free dimension after the first whose size is
    at least 2, or None where the first feed has none."""
    if not feeds:
        return None
    counters = _counters(model, feeds[:PROBE_FEEDS]) if grow else set()
    resized = [_resized(model, feed, grow, counters) for feed in feeds[:PROBE_FEEDS]]
    (_, sizes) = resized[0]
    return SizeProbe([feed for feed, _ in resized], sizes, grow, tuple(sorted({name for name, _ in counters}))) if sizes else None


def _resized(model: onnx.ModelProto, feed: Mapping[str, np.ndarray], grow: bool, counters: set) -> tuple[dict, dict]:
    """One feed cropped to size_below, or grown to size_above by its last position repeated, on its
    free dimensions after the first, and the sizes made. Not its leading part appended: a right-padded
    attention mask (1 x 19, 0 x 13) grew a hole (then 1 x 16) no tokenizer makes, and a derived model
    reading the mask as lengths failed derived::parity though it agrees on every padded mask (review16)."""
    result, sizes = dict(feed), {}
    for value in _fed_inputs(model, feed):
        array = np.asarray(feed[value.name])
        for axis, dim in _free_dims(value, array.ndim):
            size = array.shape[axis]
            if size >= 2:
                new = size_above(size) if grow else size_below(size)
                if grow:  # the last position repeated: padding stays padding, a mask gets no hole (review16)
                    tail = np.repeat(np.take(array, [-1], axis=axis), new - size, axis=axis)
                    if (value.name, axis) in counters:  # a position counter goes on counting where it counts (hunt18)
                        steps = np.arange(1, new - size + 1).reshape([-1 if a == axis else 1 for a in range(array.ndim)])
                        tail = tail + steps * (np.diff(np.take(array, [-2, -1], axis=axis), axis=axis) == 1)
                    array = np.concatenate([array, tail.astype(array.dtype)], axis=axis)
                else:
                    array = array[(slice(None),) * axis + (slice(0, new),)]
                sizes[dim.dim_param or f"{value.name}[{axis}]"] = (size, new)
        result[value.name] = array
    return result, sizes


def _counters(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> set:
    """(input, axis) of the integer inputs that count positions along a free dimension: in every feed
    each row's last three values step by 0 or 1 (a padded row repeats its last position, a left-padded
    row of two tokens ends 0, 0, 1), and some row ends counting up by one (each row whose last step is
    one goes on counting). Repeated, a position_ids input grew as 0..15, 15, 15 and
    never read past the data's length: a derived BERT whose position table was cut to the data's 16 rows
    passed the grown probe (hunt18). Token ids and masks do not count by one on every row."""
    found = set()
    for value in _fed_inputs(model, feeds[0]) if feeds else []:
        array = np.asarray(feeds[0][value.name])
        for axis, _ in _free_dims(value, array.ndim) if array.dtype.kind in "iu" else []:
            tails = [np.diff(np.moveaxis(np.asarray(feed[value.name]), axis, -1)[..., -3:], axis=-1).reshape(-1, 2)
                     for feed in feeds if np.ndim(feed.get(value.name)) == array.ndim and np.shape(feed[value.name])[axis] >= 3]
            if len(tails) == len(feeds) and all(np.all((t == 0) | (t == 1)) for t in tails) and any(np.any(np.all(t == 1, axis=1)) for t in tails):
                found.add((value.name, axis))
    return found


def unvaried(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> str:
    """What the size probe leaves at the data's size: the free dimensions after the first that the
    first feed gives size 1 (nothing is below 1 to crop to), or "" (redteam14: a derived model with
    the data's 1x1 baked in passed derived::parity saying only 'also agrees at batch 2')."""
    labels = {} if not feeds else {dim.dim_param or f"{value.name}[{axis}]": None for value in _fed_inputs(model, feeds[0])
                                   for axis, dim in _free_dims(value, np.ndim(feeds[0][value.name])) if np.shape(feeds[0][value.name])[axis] == 1}
    return (f"not varied: free dimension(s) {', '.join(labels)} of size 1 in the data, so no other size was tried there "
            "(data of size 2 or more there checks them)") if labels else ""


def _fed_inputs(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> list:
    weights = {t.name for t in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights and value.name in feed]


def _free_dims(value: onnx.ValueInfoProto, rank: int) -> list:
    """(axis, dim) of every dimension after the first that the input's declared shape leaves free."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape") or len(tensor.shape.dim) != rank:
        return []
    return [(axis, dim) for axis, dim in enumerate(tensor.shape.dim) if axis > 0 and not dim.HasField("dim_value")]


def probes(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> list:
    """The shapes to try beside the data's: another batch, smaller and larger free dimensions (any may be absent)."""
    candidates = (other_batch(model, feeds), other_size(model, feeds), other_size(model, feeds, grow=True))
    return [probe for probe in candidates if probe is not None]


def with_other_shapes(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                      run: Callable[[list], list]) -> tuple[list, list, str]:
    """(`feeds` and the probes' feeds, `run`'s outputs of the model on those feeds, what was done):
    a probe is left out, and the note says so, where the model's own run fails there; no note where
    there is no other shape to try."""
    feeds, outputs, notes = list(feeds), [], []
    for probe in probes(model, feeds):
        try:
            outputs += run(probe.feeds)
        except Exception as exc:  # noqa: BLE001 - ORT's own errors: the model's dimension is not free after all
            notes.append(f"not verified at {probe.describe()}: the model itself fails there ({type(exc).__name__})")
            continue
        feeds += probe.feeds
        notes.append(f"also verified at {probe.describe()}")
    if left := unvaried(model, feeds):
        notes.append(left)
    return feeds, outputs, "; ".join(notes)
