"""Scoring candidate activation ranges on held-out feeds: what the automatic calibration
(quant/auto_range.py) runs for every candidate it weighs.

One QDQ model of the plan has every activation's scale as a graph input (`scales_as_inputs`), so no
candidate needs a model or a session of its own; its weights are stored dequantized (the float32
values its DequantizeLinear nodes compute, bit for bit), so a run does not dequantize them again.
A full evaluation runs that model over the held-out feeds. A trial of one tensor's range runs only
the nodes downstream of its Q/DQ (its suffix), fed with the values upstream from the current
configuration's last run: they are the same for every candidate of that tensor. Every node of a
suffix runs the kernel it runs in the full model (graph optimizations off in both, so no fusion
differs across the cut), so a trial scores exactly what a full evaluation of the same ranges
scores; tests/test_quant_auto.py holds them equal. The held-out feeds run as one batch where the
model allows it, checked bit for bit against the feeds one by one (quant/feed_batch.py).

Written by hand: onnxruntime.quantization has no search over ranges (one calibrator per run), and
ONNX Runtime cannot start a run at an intermediate tensor, so each suffix is a model of its own,
cut once from the probe model and kept as a session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from onnx2trt_check.quant.calibrate import with_outputs
from onnx2trt_check.quant.feed_batch import first_axis_sizes, free_batch_dim, same_as_per_feed, split_values, stack_feeds
from onnx2trt_check.quant.insert_qdq import QdqPlan, insert_qdq
from onnx2trt_check.quant.objective import Objective
from onnx2trt_check.quant.qdq_math import dequantize, symmetric_scale
from onnx2trt_check.runtime import create_session, output_names, run_feeds

Feeds = Sequence[Mapping[str, np.ndarray]]
Outputs = list[dict[str, np.ndarray]]


@dataclasses.dataclass
class Trial:
    """The score of one configuration and the values it produced (per feed) that later trials read."""

    score: float
    values: Outputs


@dataclasses.dataclass
class _Suffix:
    """The nodes downstream of one tensor's Q/DQ (indices into the probe graph), what they read
    from upstream, what they give that later trials or the objective read, and their session."""

    nodes: list[int]
    inputs: list[str]
    outputs: list[str]
    session: object = None


class ScaleProbe:
    """The QDQ model of a plan with its activation scales as inputs, run on held-out `feeds` and
    scored by `objective` against `reference` (the float model's outputs on the same feeds).
    `threads` for its sessions (0: ONNX Runtime's choice; None: by the model's size, pool_threads);
    `batch` runs the feeds as one batch where that gives the same values bit for bit
    (quant/feed_batch.py). Defaults: threads by size, batch on."""

    def __init__(self, model: onnx.ModelProto, plan: QdqPlan, feeds: Feeds, objective: Objective, reference: Outputs,
                 *, threads: int | None = None, batch: bool = True):
        self.feeds, self.objective, self.reference = list(feeds), objective, reference
        self.evaluations = 0
        self._scale_of: dict[float, np.ndarray] = {}
        self.model, self.scale_inputs = probe_model(model, plan)
        self.outputs = [value.name for value in self.model.graph.output]
        self.suffixes = _suffixes(self.model.graph, self.scale_inputs, self.outputs)
        self._kept = sorted({name for suffix in self.suffixes.values() for name in suffix.inputs} - _graph_inputs(self.model.graph))
        self.current: dict[str, float] = {}
        self.values: Outputs = []
        # The held-out feeds as one batch, used once the first full evaluation shows it gives what
        # the feeds one by one give (quant/feed_batch.py); None: one by one. `batched` is None
        # until that evaluation decides.
        self._stacked = stack_feeds(self.feeds) if batch else None
        self._sizes: dict[str, list[int]] = {}
        self.batched: bool | None = None if self._stacked is not None else False
        # The whole model exposing what the suffixes read is shape-inferred once (with_outputs):
        # the batched one is a copy with a free first dimension, the per-feed fallback it itself.
        self._static, self._full = self.model, with_outputs(self.model, self._kept)
        if self._stacked is not None:
            self.model, self._full = (free_batch_dim(m, list(self._stacked)) for m in (self.model, self._full))
        self._sessions, self.threads = self._full_sessions(self._full, threads)
        self.session = self._sessions[self.threads]

    def _full_sessions(self, full: onnx.ModelProto, threads: int | None) -> tuple[dict[int, object], int]:
        """The session of the whole probe model (every value a suffix reads an output) by thread
        count, and the count: the one given, else pool_threads (the one-thread session, the
        batching's fallback, is made when needed)."""
        threads = pool_threads(full) if threads is None else threads
        return {threads: create_session(full, optimized=False, threads=threads)}, threads

    def _stop_batching(self) -> None:
        self.model, self._stacked, self.batched = self._static, None, False

    def evaluate(self, amax: Mapping[str, float]) -> Trial:
        """A full run with these ranges (every activation of the plan)."""
        self.evaluations += 1
        if self.batched is None:
            return self._decide_batching(amax)
        values = run_feeds(self.session, [self._feed(feed, amax) for feed in self.feeds])
        return Trial(self._score(values), values)

    def _decide_batching(self, amax: Mapping[str, float]) -> Trial:
        """The first full evaluation: one by one and as a batch; the batch from now on only if its
        values, split per feed, are the same bit for bit."""
        per_feed = run_feeds(self.session, [self._feed(feed, amax) for feed in self.feeds])
        stacked = self._run_stacked(self.session, amax)
        if stacked and not same_as_per_feed(stacked, per_feed) and self.threads != 1:
            # A thread pool may split a batched kernel's sums differently (measured: 1 ulp in a Conv
            # of convbn_classifier); one thread computes each feed as a run of one does.
            single = self._sessions.get(1) or create_session(self._full, optimized=False, threads=1)
            stacked = self._run_stacked(single, amax)
            if same_as_per_feed(stacked, per_feed):
                self.session, self.threads = single, 1
        self._sessions = None  # the session kept is self.session
        if same_as_per_feed(stacked, per_feed):
            self._sizes, self.feeds, self.batched = first_axis_sizes(per_feed), [self._stacked], True
            return Trial(self._score([stacked]), [stacked])
        # One by one: the session with a free first dimension computes each feed as the model
        # declared for one feed does (declared shapes choose no kernel with graph optimizations off).
        self._stop_batching()
        return Trial(self._score(per_feed), per_feed)

    def score(self, amax: Mapping[str, float]) -> float:
        return self.evaluate(amax).score

    def settle(self, amax: Mapping[str, float], trial: Trial) -> None:
        """Make `amax` the current configuration; `trial` is its full evaluation."""
        self.current, self.values = dict(amax), [dict(v) for v in trial.values]

    def try_range(self, tensor: str, amax: float) -> Trial:
        """The current configuration with `tensor` at `amax`, scored after running only its suffix.
        The trial fetches only the graph outputs its suffix reaches (what the score reads): the
        values later trials read are fetched again by `accept` for the few ranges taken (measured
        on a 12-layer BERT: ~130 values a run, their copies a fifth of the pass's time)."""
        ranges = {**self.current, tensor: amax}
        suffix = self.suffixes.get(tensor)
        if suffix is None:
            return self.evaluate(ranges)
        self.evaluations += 1
        scored = [name for name in suffix.outputs if name in self.outputs] or suffix.outputs
        fresh = self._run_suffix(suffix, ranges, scored)
        return Trial(self._score([{**values, **new} for values, new in zip(self.values, fresh, strict=True)]), fresh)

    def _run_suffix(self, suffix: _Suffix, ranges: Mapping[str, float], names: Sequence[str]) -> Outputs:
        """The suffix's values `names` per feed with `ranges` (scored and dropped: ORT's own arrays,
        not the owned copies run_feeds makes of values that are kept)."""
        session, names = self._session(suffix), list(names)
        return [dict(zip(names, session.run(names, feed))) for feed in self._suffix_feeds(suffix, ranges)]

    def _suffix_feeds(self, suffix: _Suffix, ranges: Mapping[str, float]) -> list[dict]:
        """Per feed, what the suffix reads: the scales of `ranges`, graph inputs, upstream values."""
        scales = self._scales(ranges)
        return [{name: scales[name] if name in scales else feed[name] if name in feed else values[name] for name in suffix.inputs}
                for feed, values in zip(self.feeds, self.values, strict=True)]

    def trial_cost(self, tensor: str) -> float:
        """What one trial of `tensor` costs, in full evaluations: the share of the probe graph's
        nodes its suffix runs (1 without a suffix: the trial is a full evaluation). A node count,
        not a time, so the same model and data always give the same choices; it overstates a
        CNN's late suffixes (their nodes run on small maps), never understates an early one."""
        suffix = self.suffixes.get(tensor)
        return 1.0 if suffix is None else len(suffix.nodes) / len(self.model.graph.node)

    def accept(self, tensor: str, amax: float, trial: Trial) -> None:
        """Keep `tensor` at `amax`; `trial` is what try_range gave for it. Its suffix runs once more
        for every value later trials read (the trial fetched the scored outputs only)."""
        self.current[tensor] = amax
        suffix = self.suffixes.get(tensor)
        fresh = trial.values if suffix is None else run_feeds(self._session(suffix), self._suffix_feeds(suffix, self.current))
        for values, new in zip(self.values, fresh, strict=True):
            values.update(new)

    def _run_stacked(self, session, amax: Mapping[str, float]) -> dict[str, np.ndarray]:
        """The stacked feeds' values, or {} when the model cannot run them (a Reshape that fixes
        the first axis): an expected outcome, so ONNX Runtime's error log is silenced."""
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4
        names = output_names(session)
        try:
            return dict(zip(names, session.run(names, self._feed(self._stacked, amax), quiet)))
        except Exception:  # ONNX Runtime's error for a first axis that is not a batch
            return {}

    def _score(self, values: Outputs) -> float:
        outputs = [{name: v[name] for name in self.outputs} for v in values]
        if self.batched:
            outputs = split_values(outputs[0], {name: self._sizes[name] for name in self.outputs})
        return self.objective(self.reference, outputs)

    def _feed(self, feed: Mapping[str, np.ndarray], amax: Mapping[str, float]) -> dict:
        return {**feed, **self._scales(amax)}

    def _scales(self, amax: Mapping[str, float]) -> dict[str, np.ndarray]:
        return {self.scale_inputs[t]: self._scale(a) for t, a in amax.items()}

    def _scale(self, amax: float) -> np.ndarray:
        if amax not in self._scale_of:
            self._scale_of[amax] = np.asarray(symmetric_scale(amax), np.float32)
        return self._scale_of[amax]

    def _session(self, suffix: _Suffix):
        if suffix.session is None:
            model = _cut(self.model, suffix, self.values)
            suffix.session = create_session(model, optimized=False, threads=self.threads)
        return suffix.session


def probe_model(model: onnx.ModelProto, plan: QdqPlan) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The QDQ model of `plan` with each activation scale a graph input (tensor -> input name) and
    every weight's DequantizeLinear replaced by the float32 tensor it computes."""
    qdq, _ = insert_qdq(model, plan, dict.fromkeys(plan.activations, 1.0))
    scale_inputs = scales_as_inputs(qdq, plan.activations)
    work = ir.from_proto(qdq)
    for node in [n for n in work.graph if n.op_type == "DequantizeLinear" and n.inputs[0].const_value is not None]:
        weights = dequantize(node.inputs[0].const_value.numpy(), node.inputs[1].const_value.numpy(), axis=node.attributes.get_int("axis", 1)
                             if node.inputs[1].const_value.numpy().size > 1 else None)
        tensor = ir.tensor(weights, name=node.outputs[0].name)
        folded = ir.Value(name=tensor.name, type=ir.TensorType(tensor.dtype), shape=tensor.shape, const_value=tensor)
        work.graph.register_initializer(_renamed(node.outputs[0], folded))
        inputs = list(node.inputs)  # removing the node detaches them
        work.graph.remove(node, safe=True)
        _drop_unused_initializers(work.graph, inputs)
    return ir.to_proto(work), scale_inputs


def _drop_unused_initializers(graph: ir.Graph, values) -> None:
    """Unregister the initializers among `values` that nothing reads any more: ONNX Runtime prunes
    an unused initializer and then fails on the external weight handed over for it
    (runtime.create_session hands over those past 64 KB: an int8 weight of a 256 KB float one)."""
    for value in values:
        if value is not None and not value.uses() and graph.initializers.get(value.name) is value:
            del graph.initializers[value.name]


def _renamed(old: ir.Value, new: ir.Value) -> ir.Value:
    """`new` takes `old`'s name and uses (old is left nameless and unused)."""
    name = old.name
    old.name = None
    old.replace_all_uses_with(new)
    new.name = name
    return new


def _graph_inputs(graph: onnx.GraphProto) -> set[str]:
    return {value.name for value in graph.input}


def _suffixes(graph: onnx.GraphProto, scale_inputs: Mapping[str, str], graph_outputs: Sequence[str]) -> dict[str, _Suffix]:
    """The suffix of every tensor whose scale some node reads; none when a node holds a subgraph
    (its reads from the outer scope are not node inputs, so no cut is known to be safe)."""
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for node in graph.node for attr in node.attribute):
        return {}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    constants = {t.name for t in graph.initializer}
    found = {t: _suffix_of(graph, consumers, constants, scale) for t, scale in scale_inputs.items() if scale in consumers}
    needed = set(graph_outputs) | {name for suffix in found.values() for name in suffix.inputs}
    for suffix in found.values():
        suffix.outputs = [name for i in suffix.nodes for name in graph.node[i].output if name in needed]
    return {tensor: suffix for tensor, suffix in found.items() if suffix.outputs}


def _suffix_of(graph: onnx.GraphProto, consumers: Mapping[str, list[int]], constants: set[str], scale: str) -> _Suffix:
    downstream, stack = set(), list(consumers[scale])
    while stack:
        index = stack.pop()
        if index not in downstream:
            downstream.add(index)
            stack.extend(c for name in graph.node[index].output for c in consumers.get(name, ()))
    nodes = sorted(downstream)
    produced = {name for i in nodes for name in graph.node[i].output}
    reads = [name for i in nodes for name in graph.node[i].input if name and name not in produced and name not in constants]
    return _Suffix(nodes, list(dict.fromkeys(reads)), [])


def _cut(model: onnx.ModelProto, suffix: _Suffix, values: Outputs) -> onnx.ModelProto:
    """The suffix as a model of its own: its upstream reads become inputs, typed from the feeds'
    values (intermediate tensors; a dim that differs between feeds is left free: calibration feeds
    of several sequence lengths) or the graph's own inputs."""
    graph = model.graph
    declared = {value.name: value for value in graph.input}
    nodes = [graph.node[i] for i in suffix.nodes]
    read = {name for node in nodes for name in node.input}
    inputs = [declared[name] if name in declared else _value_info(name, [v[name] for v in values]) for name in suffix.inputs]
    outputs = [_value_info(name, [v[name] for v in values]) for name in suffix.outputs]
    initializers = [t for t in graph.initializer if t.name in read]
    cut = onnx.helper.make_graph(nodes, f"{graph.name}_suffix", inputs, outputs, initializers)
    return onnx.helper.make_model(cut, opset_imports=model.opset_import, ir_version=model.ir_version, functions=model.functions)


def _value_info(name: str, arrays: Sequence[np.ndarray]) -> onnx.ValueInfoProto:
    """`name` typed by its values over the feeds: each dim they all share, the others free (a rank
    that differs: no shape)."""
    shapes = {np.shape(array) for array in arrays}
    first = np.asarray(arrays[0])
    shape = None if len({len(s) for s in shapes}) > 1 else [d if all(s[i] == d for s in shapes) else None for i, d in enumerate(first.shape)]
    return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(first.dtype), shape)


# Models with at least this many weight values score on ONNX Runtime's thread pool (pool_threads).
POOL_FROM_WEIGHTS = 1_000_000


def pool_threads(model: onnx.ModelProto) -> int:
    """0 (ONNX Runtime's pool) for a model of POOL_FROM_WEIGHTS weight values or more, else 1.
    Decided by size, not timed: a pool may sum a kernel's terms in another order, so the scores,
    and a choice within MIN_GAIN of another, moved with the machine's load when the faster of 1 and 0
    threads was timed per run (autotime: it picked differently from run to run on 13 of 16 models,
    and yolo_ts's final score moved 0.017 dB). Small models lose more to the pool's synchronization
    over many short runs than they gain; the sample models and zoo CNNs hold 3k-400k weights,
    ResNet-50 25M."""
    weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    return 0 if weights >= POOL_FROM_WEIGHTS else 1


def scales_as_inputs(qdq: onnx.ModelProto, tensors: Sequence[str]) -> dict[str, str]:
    """Turn the scale initializer of each activation's QuantizeLinear into a float scalar graph
    input (in place); tensor name -> input name."""
    wanted = set(tensors)
    names = {n.input[0]: n.input[1] for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in wanted}
    scale_names = set(names.values())
    kept = [t for t in qdq.graph.initializer if t.name not in scale_names]
    del qdq.graph.initializer[:]
    qdq.graph.initializer.extend(kept)
    qdq.graph.input.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, []) for name in sorted(scale_names))
    return names
