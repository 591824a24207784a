"""Running many held-out feeds as one batch: what makes the automatic calibration's trials cheap
(quant/probe.py runs every candidate range over the same feeds; one run of 16 stacked feeds costs
a fraction of 16 runs of one, most of a small model's run being ONNX Runtime's per-run overhead).

A batch is used only where it provably gives what the feeds one by one give: the feeds are stacked
along their first axis, the model's inputs get a free first dimension, and the first batched run is
checked bit for bit against the per-feed run of the same configuration (every value the probe
keeps, split back along the first axis). A model whose first axis is not a batch (a hard-coded
Reshape, a Softmax or a reduction over axis 0, an output without that axis) fails the check or the
run, and the feeds then run one by one as before. A thread pool may split a batched kernel's sums
otherwise than a run of one feed does (1 ulp in a Conv, measured): the probe then retries the batch
on one thread before it gives up. Kernels do not read the scale values to pick their arithmetic, so
bit equality on one configuration holds for every other one: the calibration's choices are those of
the feeds one by one (tests/test_quant_feed_batch.py; every sample model's scores are bit-identical).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

Feeds = Sequence[Mapping[str, np.ndarray]]
Values = list[dict[str, np.ndarray]]
BATCH_DIM = "probe_batch"


def all_copies(feeds: Feeds) -> bool:
    """Whether every feed equals the first, value for value (NaN equal to NaN): such feeds hold
    nothing out of each other, so a split of them is no held-out figure."""
    first = feeds[0]
    return all(all(np.array_equal(feed[name], first[name], equal_nan=first[name].dtype.kind in "fc") for name in first) for feed in feeds[1:])


def stack_feeds(feeds: Feeds) -> dict[str, np.ndarray] | None:
    """The feeds concatenated along their first axis, or None when they cannot be (fewer than two
    feeds, different input names, a scalar input, or shapes that differ beyond the first axis)."""
    if len(feeds) < 2 or any(feed.keys() != feeds[0].keys() for feed in feeds):
        return None
    stacked = {}
    for name in feeds[0]:
        arrays = [np.asarray(feed[name]) for feed in feeds]
        if arrays[0].ndim == 0 or any(a.shape[1:] != arrays[0].shape[1:] or a.dtype != arrays[0].dtype for a in arrays):
            return None
        stacked[name] = np.concatenate(arrays)
    return stacked


def free_batch_dim(model: onnx.ModelProto, inputs: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose `inputs` have a symbolic first dimension and whose outputs and
    intermediate values declare no shape (a declared batch of 1 would contradict a larger batch)."""
    free = onnx.ModelProto()
    free.CopyFrom(model)
    wanted = set(inputs)
    for value in free.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in wanted and len(dims):
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    for value in free.graph.output:
        if value.type.HasField("tensor_type"):  # an untyped one (a contrib op's output) stays so: an empty type is element type 0
            value.type.tensor_type.ClearField("shape")
    del free.graph.value_info[:]
    return free


def split_values(batched: Mapping[str, np.ndarray], sizes: Mapping[str, Sequence[int]]) -> Values:
    """One dict per feed: each value of `batched` cut along its first axis into `sizes[name]`."""
    parts = {name: np.split(value, np.cumsum(sizes[name])[:-1]) for name, value in batched.items()}
    count = len(next(iter(sizes.values())))
    return [{name: pieces[i] for name, pieces in parts.items()} for i in range(count)]


def first_axis_sizes(per_feed: Values) -> dict[str, list[int]] | None:
    """The first-axis length of every value in every feed's outputs; None when a value is a scalar."""
    sizes: dict[str, list[int]] = {}
    for values in per_feed:
        for name, value in values.items():
            if np.ndim(value) == 0:
                return None
            sizes.setdefault(name, []).append(np.shape(value)[0])
    return sizes


def same_as_per_feed(batched: Mapping[str, np.ndarray], per_feed: Values) -> bool:
    """Whether the batched run's values, split along the first axis, equal the per-feed run's bit
    for bit (shapes, dtypes and values; NaN equal to NaN)."""
    sizes = first_axis_sizes(per_feed)
    if sizes is None or not batched or batched.keys() != per_feed[0].keys():
        return False
    if any(np.shape(batched[name])[0:1] != (sum(sizes[name]),) for name in batched):
        return False
    split = split_values(batched, sizes)
    return all(_identical(split[i][name], values[name]) for i, values in enumerate(per_feed) for name in values)


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
