"""Run a whole-graph rewriting tool over bounded windows of a large graph, so its cost stays linear.

Why this exists: the onnxoptimizer wheel (0.4.2, the newest release) converts a model to onnx's
C++ IR, whose Value constructor scans the whole graph to mint a unique name (Graph::isNameUnique).
Import alone is therefore quadratic in node count: 0.4 s at 3,000 nodes, 12 s at 12,000. onnx
fixed the scan upstream (onnx/onnx#8310) but no onnxoptimizer release carries the fix, and no
library offers onnxoptimizer's passes over a partitioned graph, so this module does the partition.

How: the nodes (sorted topologically first if they are not, which ONNX requires and ONNX Runtime
does not) are cut into consecutive windows of at most `window` nodes. Each window becomes a model of its own: its graph inputs are the values it reads
from outside (typed where the model says the type), its graph outputs every value it produces that a
later node, a subgraph or the model's outputs read. The tool rewrites each window alone; a pattern
inside a window is matched exactly as in the whole graph, and a value that leaves the window is a
graph output there, which the onnxoptimizer passes never remove or rename (a window that loses
one anyway is kept as it was, and reported). An initializer that is also a graph input is an
overridable default and stays both, as the whole graph shows it. A second sweep, with the
cuts shifted by half a window, gives the patterns that straddled a cut of the first sweep their
chance. What a window cannot see: a pattern longer than half a window in node order, a duplicate
subexpression or a dead branch spread over two windows. Those are left as they were, never broken.

Names the tool creates inside a window (onnxoptimizer numbers them "1", "2", ...) get a suffix
unique to the window, and an initializer the tool changed in place under its old name (it saw only
the window's readers) is renamed, so windows can never collide.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable

import onnx

from onnx2trt_check import protos
from onnx2trt_check.errors import ConfigError, ModelError

Tool = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclasses.dataclass
class WindowRun:
    """What happened: how many windows ran, and the ones whose result was discarded (with why)."""

    windows: int = 0
    discarded: list[str] = dataclasses.field(default_factory=list)


def run_in_windows(model: onnx.ModelProto, tool: Tool, window: int) -> tuple[onnx.ModelProto, WindowRun]:
    """`tool` applied to `model` window by window (see the module docstring): two sweeps, the second
    offset by half a window. `model` is not modified."""
    if window < 2:
        raise ConfigError(f"window={window}: a window needs at least 2 nodes; pass window >= 2 (or None for the whole graph)")
    run = WindowRun()
    current = _topologically_sorted(model)
    for sweep, offset in enumerate((0, window // 2)):
        current = _sweep(current, tool, window, offset, sweep, run)
    return current, run


def _sweep(model: onnx.ModelProto, tool: Tool, window: int, offset: int, sweep: int, run: WindowRun) -> onnx.ModelProto:
    graph = model.graph
    nodes = list(graph.node)
    last_reader = _last_reader(graph)
    names = _all_names(graph)
    initializers = {t.name: t for t in graph.initializer}
    types = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
    graph_inputs = {v.name for v in graph.input}
    new_nodes: list[onnx.NodeProto] = []
    new_initializers: dict[str, onnx.TensorProto] = {}
    for index, (start, stop) in enumerate(_window_bounds(len(nodes), window, offset)):
        part, tag = nodes[start:stop], f"w{sweep}.{index}"
        boundary = _Boundary.of(part, stop, last_reader, initializers, graph_inputs)
        rewritten = tool(_window_model(model, part, boundary, initializers, types)).graph
        available = _produced(rewritten.node) | {t.name for t in rewritten.initializer}
        if missing := [name for name in boundary.outputs if name not in available]:
            run.discarded.append(f"window {tag} (nodes {start}..{stop - 1}) lost {', '.join(missing[:3])}: kept as it was")
            new_nodes.extend(part)
            kept = [initializers[name] for name in boundary.initializers]
        else:
            _rename_new_names(rewritten, boundary, names, initializers, tag)
            new_nodes.extend(rewritten.node)
            kept = rewritten.initializer
        for tensor in kept:
            new_initializers.setdefault(tensor.name, tensor)
        run.windows += 1
    return _reassembled(model, new_nodes, new_initializers, last_reader)


def _topologically_sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` itself when every node comes after the producers of what it reads (ONNX requires
    it; ONNX Runtime and onnxoptimizer do not), else a copy with the nodes in a stable topological
    order: windows are cut from the node order, and a value read before its producer would
    otherwise cross a cut unseen."""
    nodes = list(model.graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    needs = [{producer[name] for name in protos.names_read(node) if producer.get(name, index) != index} for index, node in enumerate(nodes)]
    if all(max(deps, default=-1) < index for index, deps in enumerate(needs)):
        return model
    readers: dict[int, list[int]] = {}
    for index, deps in enumerate(needs):
        for dep in deps:
            readers.setdefault(dep, []).append(index)
    waiting = [len(deps) for deps in needs]
    ready = [index for index, count in enumerate(waiting) if count == 0]
    order = []
    while ready:  # Kahn's algorithm; the heap keeps the original order among ready nodes
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers.get(index, ()):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) < len(nodes):
        raise ModelError("the graph has a cycle (a node reads, through other nodes, its own output); ONNX graphs must be acyclic")
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)
    return protos.model_with_graph(model, graph)


def _window_bounds(count: int, window: int, offset: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive windows covering `count` nodes; the first one is `offset` long
    when `offset` is nonzero."""
    cuts = [0, *range(offset or window, count, window), count]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


@dataclasses.dataclass(frozen=True)
class _Boundary:
    inputs: tuple[str, ...]  # read by the window, produced before it (or graph inputs)
    initializers: tuple[str, ...]  # initializers the window reads
    outputs: tuple[str, ...]  # produced by the window, read after it or a graph output
    own: frozenset[str]  # every value name the window's graph holds before the tool runs

    @classmethod
    def of(cls, part: list[onnx.NodeProto], stop: int, last_reader: dict[str, int], initializers, graph_inputs) -> _Boundary:
        produced = _produced(part)
        outer = _unique(name for node in part for name in protos.names_read(node) if name not in produced)
        outputs = [name for node in part for name in node.output if name and last_reader.get(name, -1) >= stop]
        return cls(
            # an initializer that is also a graph input is an overridable default: the window sees it
            # as the whole graph does, as both
            inputs=tuple(n for n in outer if n not in initializers or n in graph_inputs),
            initializers=tuple(n for n in outer if n in initializers),
            outputs=tuple(outputs),
            own=frozenset(produced) | frozenset(outer),
        )


def _window_model(model: onnx.ModelProto, part, boundary: _Boundary, initializers, types) -> onnx.ModelProto:
    edges = set(boundary.inputs) | set(boundary.outputs)
    graph = onnx.helper.make_graph(
        part,
        model.graph.name,
        [_value_info(name, types) for name in boundary.inputs],
        [_value_info(name, types) for name in boundary.outputs],
        [initializers[name] for name in boundary.initializers],
        value_info=[types[name] for name in boundary.own if name in types and name not in edges],
    )
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version, functions=model.functions)


def _value_info(name: str, types) -> onnx.ValueInfoProto:
    """The model's declared type of `name`, or a bare name: onnxoptimizer accepts an untyped graph
    input, and knows no more of an unannotated intermediate value in the whole graph either."""
    if name in types:
        return types[name]
    info = onnx.ValueInfoProto()
    info.name = name
    return info


def _rename_new_names(graph: onnx.GraphProto, boundary: _Boundary, names: set[str], initializers, tag: str) -> None:
    """Give every name the tool created, and every initializer it changed under an old name, a name
    no other window and no other part of the model uses (`names` is updated)."""
    renames: dict[str, str] = {}
    for tensor in graph.initializer:
        original = initializers.get(tensor.name)
        if original is not None and tensor.name in boundary.own and _same_values(tensor, original):
            tensor.CopyFrom(original)  # the round trip drops doc_string and metadata_props: not a change
            continue
        if tensor.name not in boundary.own or original is not None:
            renames[tensor.name] = _fresh(f"{tensor.name}_{tag}", names)
            tensor.name = renames[tensor.name]
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name and name not in boundary.own:
                renames.setdefault(name, _fresh(f"{name}_{tag}", names))
                node.output[i] = renames[name]
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)


def _same_values(a: onnx.TensorProto, b: onnx.TensorProto) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in (
        "data_type", "dims", "raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
        "string_data", "data_location", "external_data"))


def _fresh(hint: str, names: set[str]) -> str:
    name, suffix = hint, 0
    while name in names:
        suffix += 1
        name = f"{hint}_{suffix}"
    names.add(name)
    return name


def _reassembled(model: onnx.ModelProto, nodes: list[onnx.NodeProto], initializers: dict[str, onnx.TensorProto],
                 last_reader: dict[str, int]) -> onnx.ModelProto:
    """`model` with the windows' nodes and initializers. An initializer no node of `model` read
    (unused, or only a graph output) is in no window and is kept as it was: dropping it is a pass's
    decision, and windows cannot take it. One that is also a graph output or input is kept even
    when its readers are gone: the interface does not change."""
    graph = model.graph
    # last_reader holds every name a node of `model` reads, and the graph outputs (kept anyway)
    kept_anyway = {o.name for o in graph.output} | {i.name for i in graph.input}
    untouched = [t for t in graph.initializer if t.name not in initializers and (t.name not in last_reader or t.name in kept_anyway)]
    present = _produced(nodes) | {name for node in nodes for name in protos.names_read(node)}
    new_graph = onnx.helper.make_graph(
        nodes, graph.name, graph.input, graph.output, [*initializers.values(), *untouched],
        doc_string=graph.doc_string, value_info=[v for v in graph.value_info if v.name in present],
    )
    new_graph.sparse_initializer.extend(graph.sparse_initializer)
    result = protos.model_with_graph(model, new_graph)
    if result.ir_version < 4 and {t.name for t in new_graph.initializer} - {i.name for i in graph.input}:
        result.ir_version = 4  # IR 3 lists every initializer as a graph input; onnxoptimizer's own output is IR 4 too
    return result


# --- names ------------------------------------------------------------------------------------------


def _produced(nodes) -> set[str]:
    return {name for node in nodes for name in node.output if name}


def _last_reader(graph: onnx.GraphProto) -> dict[str, int]:
    """Name -> index of the last node that reads it; graph outputs count as read after every node."""
    last = {}
    for index, node in enumerate(graph.node):
        for name in protos.names_read(node):
            last[name] = index
    for output in graph.output:
        last[output.name] = len(graph.node)
    return last


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)} | {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.output)
        names.update(protos.names_read(node))
        for attribute in node.attribute:  # a name a subgraph defines must not be minted outside it (SSA)
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                names |= _all_names(subgraph)
    return names


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
