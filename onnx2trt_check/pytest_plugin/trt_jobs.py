"""The TensorRT calls of a model's items, each queued once on the worker, as soon as its input
file exists (issue 18).

TensorRT parses and builds in a worker process (trt/isolated.py). Run by its items, each call left
this process waiting: the parse, then the fp32 and fp16 builds, one after the other, at the end of
the model's items (0.3-0.5 s of a small model's 1.5 s run). Queued early, the worker does them on
the machine's other core while this process runs the ONNX Runtime checks; each item then takes the
result of the very call it would have made (`parse_job` and `build_job`: the same function, file,
flavour and feeds, kept once per model under one key), and a crash is still reported by the item whose call
crashed (isolated.Pending). What is queued, before each item of the model runs:

  the parse     for structure::trt_parse / structure::trt_ops
  trt[fp32]     the model itself
  trt[fp16]     once the fp16 artifact exists (target[ort-fp16] made it)
  trt[int8]     the model when it holds Q/DQ, else once the int8 artifact exists

Only the items this run selected. Not under pytest-xdist (its workers already keep every core
busy, and with `--dist load` a model's items are spread over workers), not with `--latency` (a
build on the other core would disturb the timed runs), and not for a model above EARLY_LIMIT_BYTES
of weights: there the worker's build memory would add to this process's peak instead of following
it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..context import ModelContext
from ..errors import CheckError
from ..model import tensor_bytes
from ..targets.ort_int8 import cached, model_has_qdq
from ..trt import flavour, isolated
from ..trt.build import build_engine
from ..trt.parse import parse_model
from .stash import STATE

# Weights above this (bytes) keep the old order: each build runs when its item does.
EARLY_LIMIT_BYTES = 256 * 1024 * 1024
PARSE_ITEMS = frozenset({"trt_parse", "trt_ops"})
ORDER = ("parse", "fp32", "fp16", "int8")  # the worker runs its calls in the order queued: the parse is needed first


def parse_job(ctx: ModelContext, chosen: flavour.Flavour) -> isolated.Pending:
    """The parse of the model (structure::trt_parse and structure::trt_ops share it)."""
    return cached(ctx, f"trt-parse:{chosen.label}", lambda: isolated.submit(parse_model, os.path.abspath(ctx.path), chosen))


def build_job(ctx: ModelContext, chosen: flavour.Flavour, path) -> isolated.Pending:
    """The build of `path` (a trt::build[<precision>] item's file)."""
    return cached(ctx, f"trt-build:{chosen.label}:{path}", lambda: isolated.submit(build_engine, os.path.abspath(path), chosen, feeds=ctx.feeds))


class EarlyBuilds:
    """Session plugin: per model path, the TensorRT calls the run's selected items will make."""

    def __init__(self):
        self.wanted: dict[Path, set[str]] = {}  # model path -> "parse" and the precisions selected
        self.queued: set[tuple[Path, str]] = set()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            if (wanted := _work_of(item)) is not None:
                self.wanted.setdefault(item.path, set()).add(wanted)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        waiting = {w for w in self.wanted.get(item.path, ()) if (item.path, w) not in self.queued}
        if not waiting:
            return
        try:
            ctx = item.config.stash[STATE].context_for(item.path)
        except CheckError:  # the model cannot be loaded now: its items say so themselves
            ctx = None
        if ctx is None or _weight_bytes(ctx) > EARLY_LIMIT_BYTES:
            self.wanted.pop(item.path)
            return
        for work in sorted(waiting, key=ORDER.index):
            if _queue(ctx, work):
                self.queued.add((item.path, work))


def _work_of(item: pytest.Item) -> str | None:
    check = getattr(item, "check", None)
    if check is None:
        return None
    if check.family == "structure" and check.name in PARSE_ITEMS:
        return "parse"
    if check.stem == "trt" and check.name == "build":
        return check.parameter
    return None


def _queue(ctx: ModelContext, work: str) -> bool:
    """Queue `work` if its input exists; False when it has to wait (or TensorRT is missing: the
    item says so itself)."""
    try:
        chosen = flavour.select()
    except flavour.TrtUnavailable:
        return True  # nothing to queue, ever
    if work == "parse":
        parse_job(ctx, chosen)
        return True
    path = _ready_file(ctx, work)
    if path is not None:
        build_job(ctx, chosen, path)
    return path is not None


def _ready_file(ctx: ModelContext, precision: str) -> Path | None:
    """The file the precision's build item deploys, when it exists already (never made here)."""
    if precision == "fp32":
        return ctx.path
    if precision == "fp16":
        return ctx.made("fp16")
    return ctx.path if model_has_qdq(ctx) else ctx.made("int8")


def _weight_bytes(ctx: ModelContext) -> int:
    """Bytes of the numeric initializers (a string tensor has no fixed size and counts none)."""
    return sum(tensor_bytes(tensor) or 0 for tensor in ctx.loaded.proto.graph.initializer)


def session_plugin(config: pytest.Config, latency: bool) -> EarlyBuilds | None:
    if hasattr(config, "workerinput") or latency:
        return None
    return EarlyBuilds()
