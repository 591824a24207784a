"""The op table (trt_ops.py) against the real parser and builder, on single-op models.

The corpus is ONNX's own backend node tests (about 1,900 single-op models with their inputs, every
op in several dtype and attribute variants), generated with `onnx.backend.test.case.node`: the
generators ship in every onnx wheel, the stored `data/node` folder only in some. A model is
accepted by TensorRT when it parses and builds (an optimization profile from the test's inputs);
by the table when `trt_ops.unsupported_nodes` reports no error. Agreement is the share of models
with the same verdict. benchmarks/bench_trt_differential.py prints the figures.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import onnx

from .. import trt_ops
from ..leftovers import temporary_folder
from . import isolated
from .build import build_engine
from .flavour import Flavour
from .parse import failed_on_cuda


@dataclasses.dataclass(frozen=True)
class Case:
    """One node test: its name, the op it tests, its model and first input set (as a feed).
    A function-expanded test ("..._expanded") tests the op it expands."""

    name: str
    op_type: str
    model: onnx.ModelProto
    feed: dict


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One case: both verdicts and reasons. `needs_gpu`: the builder hit a CUDA call on this
    GPU-less machine, so TensorRT gave no verdict; such cases are left out of the agreement."""

    name: str
    table_accepts: bool
    trt_accepts: bool
    table_reason: str
    trt_reason: str
    needs_gpu: bool = False

    @property
    def agrees(self) -> bool:
        return self.table_accepts == self.trt_accepts


def node_test_cases(op_type: str | None = None) -> list[Case]:
    """ONNX's node tests (all, or one op's)."""
    return [case for case in _all_node_test_cases() if op_type in (None, case.op_type)]


@functools.cache
def _all_node_test_cases() -> tuple[Case, ...]:
    """Every node test, collected once per process: onnx's collect_testcases registers the tests
    while importing its generator modules, so only its first call in a process collects (a later
    call, with any op filter, returns the first call's list). Their expected outputs are computed
    by numpy on the way, which is most of the 10-20 s this takes."""
    from onnx.backend.test.case import node  # noqa: PLC0415 - heavy: imports every test generator

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = [c for c in node.collect_testcases(None) if c.kind == "node"]
    tested = {c.name: c.model.graph.node[0].op_type for c in cases if len(c.model.graph.node) == 1}
    return tuple(Case(c.name, _tested_op(c, tested), c.model, _feed(c)) for c in cases)


def _tested_op(case, tested: dict[str, str]) -> str:
    if "_expanded" in case.name:
        return tested.get(case.name.split("_expanded")[0], "")
    return case.model.graph.node[0].op_type if len(case.model.graph.node) == 1 else ""


def _feed(case) -> dict:
    if not case.data_sets:
        return {}
    inputs = case.data_sets[0][0]
    names = [value.name for value in case.model.graph.input]
    return {name: np.asarray(value) for name, value in zip(names, inputs) if isinstance(value, (np.ndarray, np.generic))}


def table_verdict(model: onnx.ModelProto, *, flavour_key: str) -> tuple[bool, str]:
    """Whether the op table lets the model through (no error finding) for that flavour, and the
    first error's reason."""
    errors = [f for f in trt_ops.unsupported_nodes(model, flavour=flavour_key) if f.severity == "error"]
    return (not errors, errors[0].reason if errors else "")


def trt_verdict(path: str, flavour: Flavour, feed: dict) -> tuple[bool, str, bool]:
    """Whether TensorRT parses and builds the model, the first message when it does not, and
    whether the build needed a GPU (no verdict)."""
    result = build_engine(path, flavour, feeds=[feed] if feed else ())
    if result.ok:
        return True, "", False
    first = result.parse.issues[0].message if not result.parse.ok else (result.errors[0] if result.errors else "")
    return False, _reason(first), result.needs_gpu


def _reason(message: str) -> str:
    """The line of a TensorRT message that says why: not the "Invalid Node - name" header, not a
    CUDA error that TensorRT's error path adds after the real one."""
    lines = [line for line in message.splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith("Invalid Node") and not failed_on_cuda([line])]
    return (telling or lines or [""])[0]


def _verdict_of(name: str, data: bytes, feed: dict, flavour: Flavour) -> tuple[bool, str, bool]:
    """Worker: TensorRT's verdict on one serialized model."""
    with temporary_folder("onnx2trt_check-diff-") as folder:
        path = os.path.join(folder, f"{name}.onnx")
        with open(path, "wb") as stream:
            stream.write(data)
        return trt_verdict(path, flavour, feed)


def compare(cases: Iterable[Case], flavour: Flavour, *, workers: int = 2) -> list[Verdict]:
    """Table and TensorRT verdicts per case; TensorRT's in `workers` processes (isolated.map_calls:
    a crash is a rejection). Defaults to 2 processes."""
    cases = list(cases)
    payload = [(c.name, c.model.SerializeToString(), c.feed, flavour) for c in cases]
    results = isolated.map_calls(_verdict_of, payload, workers=workers)
    verdicts = []
    for case, result in zip(cases, results):
        table_ok, table_reason = table_verdict(case.model, flavour_key=flavour.key)
        accepted, reason, needs_gpu = (False, str(result), False) if isinstance(result, isolated.TrtCrashed) else result
        verdicts.append(Verdict(case.name, table_ok, accepted, table_reason, reason, needs_gpu))
    return verdicts


def agreement(verdicts: Sequence[Verdict]) -> tuple[int, int]:
    """(agreeing, decided): cases where TensorRT gave a verdict, and how many of them agree."""
    decided = [v for v in verdicts if not v.needs_gpu]
    return sum(v.agrees for v in decided), len(decided)


def summary(verdicts: Sequence[Verdict], flavour: Flavour) -> list[str]:
    """The figures: agreement, and each kind of disagreement with examples."""
    agree, decided = agreement(verdicts)
    undecided = len(verdicts) - decided
    verdicts = [v for v in verdicts if not v.needs_gpu]
    passes_rejected = [v for v in verdicts if v.table_accepts and not v.trt_accepts]
    rejects_accepted = [v for v in verdicts if not v.table_accepts and v.trt_accepts]
    table = trt_ops.load_op_table()
    lines = [
        f"op table ({table.citation}, checked as {flavour.name}) vs {flavour.label} parser+builder on {len(verdicts)} ONNX node tests (onnx {onnx.__version__})",
        f"  agreement {agree}/{decided} = {100 * agree / max(decided, 1):.1f}% ({undecided} more left out: the build needed a GPU, none here)",
        f"  {flavour.name} accepts {sum(v.trt_accepts for v in verdicts)}, rejects {sum(not v.trt_accepts for v in verdicts)}",
        f"  table passes but {flavour.name} rejects: {len(passes_rejected)}",
        f"  table rejects but {flavour.name} accepts: {len(rejects_accepted)}",
    ]
    lines += [f"    passes, rejected: {v.name}: {v.trt_reason[:160]}" for v in passes_rejected]
    lines += [f"    rejects, accepted: {v.name}: {v.table_reason[:160]}" for v in rejects_accepted]
    return lines
