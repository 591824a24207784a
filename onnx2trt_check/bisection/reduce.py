"""A minimal failing subgraph, ready for a bug report: model.onnx + inputs.npz.

The search follows Polygraphy's `debug reduce`: first bisect, then linear. Over the nodes in
topological order, phase 1 bisects for the earliest node whose outputs, made the graph outputs,
still fail (everything after it goes); phase 2 bisects for the latest node whose inputs, made the
graph inputs, still fail (everything before it goes). Bisection assumes the failure is monotone, as
Polygraphy's does; the linear phase then tries to drop each remaining node on its own (which also
prunes side branches that bisection over a topological order keeps). A subgraph is a node set: its
inputs are the tensors it reads but does not produce (not constants), its outputs the tensors it
produces and does not read itself, or that are graph outputs. Tensors that become inputs take their
values from the original model run on the feeds. Extraction is onnx-ir's `convenience.extract`.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes

from onnx2trt_check.errors import ConfigError, InputDataError
from onnx2trt_check.fileio import atomic_write_bytes, file_set, refuse_overwrite, save_model
from onnx2trt_check.runtime import create_session
from onnx2trt_check.transforms.graph_utils import node_label

Feeds = list[dict[str, np.ndarray]]
StillFails = Callable[[onnx.ModelProto, Feeds], bool]


@dataclasses.dataclass
class ReducedModel:
    """The reduced model, its feeds, the names of its nodes and how many `still_fails` calls the
    search made."""

    model: onnx.ModelProto
    feeds: Feeds
    nodes: list[str]
    checks: int
    original_nodes: int

    def save(self, directory: str | os.PathLike, *, force: bool = False) -> tuple[Path, Path]:
        """Write model.onnx and inputs.npz into `directory` as one (fileio.file_set: a failure or
        Ctrl-C midway leaves the old pair); refuses to overwrite either unless `force`. Arrays are
        stored by input name in the layout `--inputs` reads: a single feed as it is, several
        stacked on a new leading axis (one feed per slice), so
        `pytest --model model.onnx --inputs inputs.npz` reproduces the failure. Defaults to no
        overwrite."""
        directory = Path(directory)
        model_path, inputs_path = directory / "model.onnx", directory / "inputs.npz"
        for path in (model_path, inputs_path):
            refuse_overwrite(path, force=force, flag="force=True")
        buffer = io.BytesIO()
        np.savez(buffer, **_npz_arrays(self.feeds))
        with file_set(directory, force=force) as stage:
            save_model(self.model, stage / model_path.name)
            atomic_write_bytes(stage / inputs_path.name, buffer.getvalue())
        return model_path, inputs_path


def _npz_arrays(feeds: Feeds) -> dict[str, np.ndarray]:
    if len(feeds) == 1:
        return dict(feeds[0])
    return {name: np.stack([feed[name] for feed in feeds]) for name in feeds[0]}


def reduce_failing_subgraph(model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]], still_fails: StillFails) -> ReducedModel:
    """The smallest subgraph of `model` for which `still_fails(subgraph, subgraph_feeds)` holds
    (see the module doc). `model` is not mutated."""
    feeds = [dict(feed) for feed in feeds]
    if not feeds:
        raise InputDataError("feeds is empty; pass at least one feed (a dict of input name -> array)")
    search = _Search(model, feeds, still_fails)
    if not search.fails(search.order):
        raise ConfigError("still_fails is False for the whole model; nothing to reduce (check the predicate and the feeds)")
    nodes = search.linear(search.bisect())
    subgraph, sub_feeds = search.subgraph(nodes)
    return ReducedModel(subgraph, sub_feeds, [search.names[i] for i in nodes], search.checks, len(search.order))


class _Search:
    def __init__(self, model: onnx.ModelProto, feeds: Feeds, still_fails: StillFails) -> None:
        self.model, self.still_fails, self.checks = ir.from_proto(model), still_fails, 0
        if any(value.type is None for node in self.model.graph for value in node.outputs if value.name):
            self.model = ir_passes.ShapeInferencePass()(self.model).model  # a subgraph's outputs need types
        self.nodes = list(self.model.graph)
        self.order = list(range(len(self.nodes)))
        self.names = [node_label(node) for node in self.nodes]  # unnamed: OpType(first output), as every report names it
        self.constant = constant_nodes(self.nodes)
        self.position = {id(node): i for i, node in enumerate(self.nodes)}  # node -> index, for the walks below
        self.values = _all_values(model, feeds)
        self.cache: dict[tuple[int, ...], bool] = {}

    def fails(self, nodes: Sequence[int]) -> bool:
        key = tuple(sorted(nodes))
        if key not in self.cache:
            self.checks += 1
            self.cache[key] = bool(self.still_fails(*self.subgraph(key)))
        return self.cache[key]

    def bisect(self) -> list[int]:
        """Polygraphy's two phases: the earliest failing output node, the latest failing input node."""
        last = _first_true(len(self.order), lambda i: self.fails(self._ancestors(i)))
        kept = self._ancestors(last)
        if not self.fails(kept):  # not monotone (e.g. several outputs): start linear from everything
            return list(self.order)
        first = _last_true(kept, lambda j: self.fails([i for i in kept if i >= j]))
        return [i for i in kept if i >= first]

    def linear(self, nodes: list[int]) -> list[int]:
        """Drop single nodes while the rest still fails, until no single drop does."""
        changed = True
        while changed and len(nodes) > 1:
            changed = False
            for index in list(nodes):
                rest = [i for i in nodes if i != index]
                if self.fails(rest):
                    nodes, changed = rest, True
        return nodes

    def _with_constants(self, nodes: Sequence[int]) -> set[int]:
        """`nodes` and the constant nodes they read (a Constant, an Identity of a weight): their
        values stay in the subgraph, never turned into inputs (a ts export's LayerNorm weights and
        a Resize's scales were inputs of the saved model)."""
        position = self.position
        found, stack = set(nodes), list(nodes)
        while stack:
            for value in reads(self.nodes[stack.pop()]):
                producer = value.producer()
                if producer is not None and producer in self.constant and position[id(producer)] not in found:
                    found.add(position[id(producer)])
                    stack.append(position[id(producer)])
        return found

    def _ancestors(self, last: int) -> list[int]:
        """Node `last` and every node it depends on."""
        needed, stack, position = {last}, [last], self.position
        while stack:
            for value in reads(self.nodes[stack.pop()]):
                producer = value.producer()
                if producer is not None and position[id(producer)] not in needed:
                    needed.add(position[id(producer)])
                    stack.append(position[id(producer)])
        return sorted(needed)

    def subgraph(self, nodes: Sequence[int]) -> tuple[onnx.ModelProto, Feeds]:
        chosen = [self.nodes[i] for i in sorted(self._with_constants(nodes))]
        inputs, outputs = boundary(chosen)
        graph = ir.convenience.extract(self.model.graph, inputs=inputs, outputs=outputs)
        for value in graph.inputs:  # an intermediate tensor turned input: type it from its values
            array = self.values[0][value.name]
            value.dtype, value.shape = ir.DataType.from_numpy(array.dtype), ir.Shape(array.shape)
        model = ir.Model(graph, ir_version=self.model.ir_version, producer_name="onnx2trt_check.bisection.reduce")
        feeds = [{name: per_feed[name] for name in inputs} for per_feed in self.values]
        return ir.to_proto(model), feeds


def constant_nodes(nodes: Sequence[ir.Node]) -> set[ir.Node]:
    """The nodes (in topological order) whose every input is a weight or another constant node's
    output; random ops are not constant."""
    found: set[ir.Node] = set()
    for node in nodes:
        if node.op_type.startswith("Random"):
            continue
        if all(v.is_initializer() or v.const_value is not None or v.producer() in found for v in reads(node)):
            found.add(node)
    return found


def reads(node: ir.Node) -> list[ir.Value]:
    """The values `node` reads: its inputs, and the outer values its subgraphs (If/Loop/Scan
    bodies) capture by name. Without the captures a Constant or tensor read only inside a branch
    was neither kept nor made an input: extracting the subgraph raised "not properly bounded"."""
    graphs, stack = [], [node]
    while stack:
        for attribute in stack.pop().attributes.values():
            inner = [attribute.value] if attribute.type == ir.AttributeType.GRAPH else list(attribute.value) if attribute.type == ir.AttributeType.GRAPHS else []
            graphs += inner
            stack += [n for graph in inner for n in graph]
    local = {id(graph) for graph in graphs}
    captured = [v for graph in graphs for n in graph for v in n.inputs if v is not None and id(v.graph) not in local]
    return list(dict.fromkeys([v for v in node.inputs if v is not None] + captured))


def boundary(nodes: Sequence[ir.Node]) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a node set: what it reads but does not produce (constants and
    initializers excluded), and what it produces that it does not read itself or that is a graph
    output."""
    produced = {value.name for node in nodes for value in node.outputs if value.name}
    read = [value for node in nodes for value in reads(node)]
    inputs = [v.name for v in read if v.name not in produced and not v.is_initializer() and v.const_value is None]
    read_names = {value.name for value in read}
    outputs = [v.name for node in nodes for v in node.outputs if v.name and (v.name not in read_names or v.is_graph_output())]
    return list(dict.fromkeys(inputs)), outputs


def _all_values(model: onnx.ModelProto, feeds: Feeds) -> list[dict[str, np.ndarray]]:
    """Every tensor of the top-level graph (inputs and node outputs) for each feed: one run."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {output.name for output in probe.graph.output}
    names = [name for node in probe.graph.node for name in node.output if name and name not in present]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    session = create_session(probe, optimized=False)
    outputs = [output.name for output in session.get_outputs()]
    return [{**feed, **dict(zip(outputs, session.run(outputs, feed)))} for feed in feeds]


def _first_true(count: int, predicate: Callable[[int], bool]) -> int:
    """The smallest i in [0, count) with predicate(i), assuming it is monotone and count-1 holds."""
    low, high = -1, count - 1
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if predicate(middle) else (middle, high)
    return high


def _last_true(items: Sequence[int], predicate: Callable[[int], bool]) -> int:
    """The largest item with predicate(item), assuming it is monotone and items[0] holds."""
    low, high = 0, len(items)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if predicate(items[middle]) else (low, middle)
    return items[low]
