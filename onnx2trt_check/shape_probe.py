"""A second batch size: a model that leaves its batch dimension free is promised to run at any batch,
so a derived model or a transform result is also compared at a batch the data does not have.

plant12: a derived model with `Reshape(logits, [2, -1])` (the traced batch kept) passed
`derived::parity` on batch-2 data, and a transform result with batch 1 baked into a Reshape was
verified and written by `optimize`; both fail, or silently compute something else, at any other
batch. The data and the original are at hand, so no user information is needed: one feed of
batch B >= 2 gives a batch of 1 (its first row), two feeds of batch 1 stacked give a batch of 2
(a single feed is stacked with itself).

Only a batch in the declared sense: every graph input's first dimension free (transforms.verify.
declares_batch), under at most one dim_param, and every feed
holding the same size there. A model whose own run fails at the other size declares a batch it
does not have; the probe is then dropped and the caller says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from .transforms.verify import declares_batch


@dataclasses.dataclass(frozen=True)
class BatchProbe:
    """One feed at another batch size than the data's, and how it was made."""

    feed: dict[str, np.ndarray]
    size: int
    data_size: int
    repeated: bool = False  # one feed stacked with itself

    def describe(self) -> str:
        how = "the first row of a feed" if self.size == 1 else "the only feed twice" if self.repeated else "two feeds stacked"
        return f"batch {self.size} ({how}; the data's batch is {self.data_size} and the model declares its batch free)"


def other_batch(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]]) -> BatchProbe | None:
    """A feed at another batch size than `feeds` have, or None where the model declares no batch or
    the feeds disagree on its size."""
    if not feeds or not declares_batch(model) or len(_batch_names(model)) > 1:
        return None
    sizes = {np.shape(array)[0] if np.ndim(array) else None for feed in feeds for array in feed.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    (size,) = sizes
    if size >= 2:
        return BatchProbe({name: np.asarray(array)[:1] for name, array in feeds[0].items()}, 1, size)
    if size != 1:
        return None
    # A second feed of the same shapes, else the first one twice: equal rows still show a batch baked
    # into a shape (plant12's optimize case had one feed), though not rows mixed across the batch.
    second = feeds[1] if len(feeds) >= 2 and all(np.shape(feeds[0][n]) == np.shape(feeds[1].get(n)) for n in feeds[0]) else feeds[0]
    return BatchProbe({name: np.concatenate([feeds[0][name], second[name]]) for name in feeds[0]}, 2, 1, second is feeds[0])


def _batch_names(model: onnx.ModelProto) -> set[str]:
    """The dim_params naming the inputs' first dimension ("" for one without a name): two names
    are two free dimensions, which no single slice or stack is sure to keep consistent."""
    weights = {t.name for t in model.graph.initializer}
    return {value.type.tensor_type.shape.dim[0].dim_param for value in model.graph.input if value.name not in weights} - {""}


def with_other_batch(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]],
                     run: Callable[[list], list]) -> tuple[list, list, str]:
    """(`feeds` and the other batch's feed, `run`'s outputs of the model on that feed, what was done):
    the feed is left out, and the note says so, where the model's own run fails there; no note where
    there is no other batch to try."""
    probe = other_batch(model, feeds)
    if probe is None:
        return list(feeds), [], ""
    try:
        outputs = run([probe.feed])
    except Exception as exc:  # noqa: BLE001 - ORT's own errors: the model's batch is not free after all
        return list(feeds), [], f"not verified at {probe.describe()}: the model itself fails there ({type(exc).__name__})"
    return [*feeds, probe.feed], outputs, f"also verified at {probe.describe()}"
