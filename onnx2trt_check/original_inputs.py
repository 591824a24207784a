"""The data of inputs only the original model takes, for a derived model that takes fewer
(--reference-model): a DistilBERT student has no token_type_ids, its BERT teacher has; a model
re-exported with TorchScript loses the inputs it does not read. Before, such a pair could not be
checked at all: data holding the input was refused ("not an input of the model"), data without it
matched "neither by name nor by count".

The checked model's feeds never hold these arrays (every target runs them as they are); the
original gets them beside each feed (references.ReferenceModel.run's `extras`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import onnx

from .data import Feed, FeedOptions, RawData, data_shapes, fit, random_feeds
from .errors import InputDataError
from .model import resolve_input_specs


def split(raw: RawData | None, only: Sequence[str]) -> tuple[RawData | None, RawData | None]:
    """(the data of the checked model's inputs, the data of the original's own) from one source."""
    if raw is None or not only:
        return raw, None
    if raw.arrays is not None:
        mine = {name: array for name, array in raw.arrays.items() if name not in only}
        theirs = {name: array for name, array in raw.arrays.items() if name in only}
        return dataclasses.replace(raw, arrays=mine), dataclasses.replace(raw, arrays=theirs)
    mine_feeds = [{name: array for name, array in feed.items() if name not in only} for feed in raw.feeds]
    theirs_feeds = [{name: array for name, array in feed.items() if name in only} for feed in raw.feeds]
    return dataclasses.replace(raw, feeds=mine_feeds), dataclasses.replace(raw, feeds=theirs_feeds)


def original_only_feeds(original: onnx.ModelProto, only: Sequence[str], raw: RawData | None, feeds: list[Feed],
                        inputs: dict[str, str], options: FeedOptions, label: str) -> list[Feed]:
    """One dict per feed of the arrays of `only`, the inputs only `original` takes: from the data
    (`raw`, split from the checked model's), else drawn like every generated input. A free dimension
    they share by name with a matched input takes that input's size in the first feed."""
    if not only:
        return []
    shared = {inputs[name]: array.shape for name, array in feeds[0].items() if name in inputs} if feeds else {}
    if raw is None:
        specs = [spec for spec in resolve_input_specs(original, None, data_shapes=shared) if spec.name in only]
        return random_feeds(specs, seed=options.seed + 1, count=len(feeds), ranges={})
    have = set(raw.arrays) if raw.arrays is not None else set().union(*map(set, raw.feeds))
    if missing := [name for name in only if name not in have]:
        raise InputDataError(f"{label} takes input '{missing[0]}', which the model does not: add it to {raw.option} {raw.label} "
                             "(it is fed to the original alone)")
    specs = [spec for spec in resolve_input_specs(original, None, data_shapes=shared | data_shapes(raw, original)) if spec.name in only]
    found = fit(raw, specs, proto=original)
    if len(found) != len(feeds):
        raise InputDataError(f"{raw.option} {raw.label} holds {len(found)} feed(s) of the original's input(s) {', '.join(only)} "
                             f"and {len(feeds)} of the model's; give every input the same leading count")
    return found


def probe_view(model: onnx.ModelProto, original: onnx.ModelProto, only: Sequence[str], feeds: list[Feed],
               extras: list[Feed]) -> tuple[onnx.ModelProto, list[Feed]]:
    """(a weightless model of the checked model's inputs and the original's own, the feeds with their
    arrays joined): shape_probe's probes of it crop, grow and split both alike (a BERT teacher's
    token_type_ids with its student's input_ids), and each run takes its own inputs from them."""
    if not only:
        return model, feeds
    weights = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in weights] + [v for v in original.graph.input if v.name in only]
    view = onnx.helper.make_model(onnx.helper.make_graph([], "inputs", inputs, []), opset_imports=model.opset_import)
    return view, [feed | extra for feed, extra in zip(feeds, extras)]
