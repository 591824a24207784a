"""The identity of input feeds by their content, for the baseline's data fingerprint and for telling
test feeds that are calibration feeds too: one way to hash a feed, so both agree on what "the same
data" means."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np


def update_with_feed(digest, feed: Mapping[str, np.ndarray]) -> None:
    """Add one feed to `digest`: every input's name, dtype, shape and bytes, inputs by name."""
    for name in sorted(feed):
        array = np.ascontiguousarray(feed[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.view(np.uint8).reshape(-1) if array.size else b"")


def feeds_sha256(feeds: Sequence[Mapping[str, np.ndarray]]) -> str:
    """The sha256 of `feeds` in order (one feed: that feed's identity)."""
    digest = hashlib.sha256()
    for feed in feeds:
        update_with_feed(digest, feed)
    return digest.hexdigest()
