"""onnxsim and onnxoptimizer as transforms: they do the work, this module only adapts them to the
`TransformResult` contract (input never mutated, node counts, which passes ran).

Their own checks are off (onnxsim `check_n=0`, no proof attempt): the pipeline verifies every
modifying step with `verify.check_equivalence`, one rule for every transform.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import onnx
import onnxoptimizer

from onnx2trt_check import protos
from onnx2trt_check.errors import OutputPathError, first_line
from onnx2trt_check.fileio import EXTERNAL_DATA_BYTES, save_model
from onnx2trt_check.leftovers import temporary_folder
from onnx2trt_check.runtime import release_freed_memory
from onnx2trt_check.transforms import graph_utils as gu
from onnx2trt_check.transforms.base import TransformReport, TransformResult
from onnx2trt_check.transforms.windows import WindowRun, run_in_windows

# What onnxsim runs, for the report: it has no pass list of its own to ask.
_ONNXSIM_STEPS = ("constant_folding", "shape_inference", "onnxoptimizer fuse_and_elimination")


def simplify(model: onnx.ModelProto, *, fuse_bn: bool = True) -> TransformResult:
    """onnxsim.simplify with its own random-input check disabled (check_n=0). `fuse_bn=False`
    leaves BatchNormalization to our own folds (onnxsim's skip_fuse_bn). Defaults to True."""
    onnxsim = import_onnxsim()
    try:
        with temporary_folder("onnx2trt_check-simplify-") as folder:
            simplified = _simplified_by_file(onnxsim, model, Path(folder), skip_fuse_bn=not fuse_bn)
    except (OSError, OutputPathError):  # no room in the temporary folder: in memory, which needs none
        simplified, _ = onnxsim.simplify(gu.copy_model(model), check_n=0, skip_fuse_bn=not fuse_bn, certify=False)
    release_freed_memory()  # onnxsim's C++ copies, freed into the C heap
    return _result(model, simplified, list(_ONNXSIM_STEPS), tool="onnxsim")


def _simplified_by_file(onnxsim: ModuleType, model: onnx.ModelProto, folder: Path, *, skip_fuse_bn: bool) -> onnx.ModelProto:
    """onnxsim from a file to a file: the same C++ simplification as from a proto (the same
    result, byte for byte), at about a third of the memory. Given a proto, onnxsim serializes it
    (one copy), its C++ core parses it (two), serializes the result (three), hands Python a copy
    of those bytes (four) and parses them (five), with the caller's model alive throughout: 4.2x
    a 100 MB model above the model itself. From a file, the C++ core reads the file itself and
    writes its result, which is read back once: 1.5x. The input is written inline (external data
    only above protobuf's 2 GiB, as onnxsim's own path does): with its weights as external data,
    onnxsim leaves its fast path and returns a different graph. Costs about 0.5 s of a 100 MB
    model over the in-memory call (writing it, onnxsim's C++ file reader, reading the result)."""
    source, target = folder / "model.onnx", folder / "simplified.onnx"
    _write_scratch(model, source)
    with _onnxsim_warnings_condensed():
        onnxsim.simplify(str(source), check_n=0, skip_fuse_bn=skip_fuse_bn, certify=False, output_path=str(target))
    return onnx.load(str(target))  # inline, or with external data of its own above protobuf's 2 GiB


@contextlib.contextmanager
def _onnxsim_warnings_condensed():
    """onnxsim's C++ core prints, for each op its constant folding cannot run in ONNX Runtime,
    "WARNING: failed to run "Cast" op (name is ""), skip... " followed by the whole Python traceback
    of ORT's error, on the process's stderr (file descriptor 2, past sys.stderr): a user saw a
    traceback from a command that went on to finish. Kept: one line per warning, with ORT's reason."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            printed = sink.read().decode(errors="replace")
    for warning in _condensed(printed):
        print(warning, file=sys.stderr)


def _condensed(printed: str) -> list[str]:
    """Each distinct onnxsim warning as one line ("skip..." and the error's last line in place of a
    traceback); other lines as they are, traceback frames dropped."""
    lines, found = printed.splitlines(), []
    for index, line in enumerate(lines):
        if line.startswith(("  ", "Traceback")) or not line.strip():
            continue
        head, traceback, _ = line.partition(" Traceback (most recent call last):")
        if traceback:
            error = next((later for later in lines[index + 1:] if later.strip() and not later.startswith("  ")), "")
            head = f"{head} ({error.strip()})"
        elif index and lines[index - 1].startswith("  "):
            continue  # the error line that ends a traceback, already taken into its warning
        if (line := f"onnxsim: {head.strip()}") not in found:
            found.append(line)
    return found


def _write_scratch(model: onnx.ModelProto, path: Path) -> None:
    """The model as one inline file, or with external data where protobuf cannot hold it: a
    scratch file, written without fileio's atomic rename and fsync (an fsync of 100 MB cost
    seconds of wall time on a busy disk)."""
    weights = sum(protos.raw_data_bytes(t) for t in model.graph.initializer if t.HasField("raw_data"))
    if weights > EXTERNAL_DATA_BYTES:
        save_model(model, path)
    else:
        path.write_bytes(model.SerializeToString())


# onnxsim modules that import torch when their module is executed, each inside a try/except that
# turns a missing torch into "that feature is unavailable" (checked by tests/test_transform_simplify.py
# against the installed onnxsim): ppq_integration, its PPQ quantization bridge, which we never call.
ONNXSIM_TORCH_IMPORTERS = ("onnxsim.ppq_integration",)


def import_onnxsim() -> ModuleType:
    """onnxsim, imported without torch unless the process has imported torch already.

    onnxsim 0.8's package import runs `import torch` (ppq_integration, for its PPQ bridge), which
    costs 2-5 s where torch is installed, as it is for most users of this tool. Nothing we call
    needs torch, and that import is guarded by try/except, so while onnxsim is imported torch is
    marked absent (`sys.modules["torch"] = None`, Python's documented way to make an import fail)
    and unmarked right after: only onnxsim's own optional PPQ bridge sees it missing, every later
    `import torch` in the process (a user's reference script) works as usual. Imported here, not
    at the top, so a run that never simplifies pays nothing."""
    if "onnxsim" in sys.modules or "torch" in sys.modules:
        import onnxsim

        return onnxsim
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import onnxsim
    finally:
        if sys.modules.get("torch", ...) is None:
            del sys.modules["torch"]
    return onnxsim


# Passes that read the values of large weights; with none of them requested, the large weights
# are left out of what onnxoptimizer sees (its C++ round trip copies every byte four times: that
# was 0.9 s of a 100 MB model, four times onnx.load + onnx.save).
_PASSES_READING_WEIGHTS = frozenset({"fuse_bn_into_conv", "eliminate_duplicate_initializer"})
# Small initializers stay: biases, pads, shapes and scales are what the fusions read.
_LARGE_WEIGHT_BYTES = 64 * 1024
# A graph with more nodes than this is optimized window by window (windows.py: onnxoptimizer's
# import is quadratic in node count). 500 nodes take onnxoptimizer ~0.02 s; 6,000 nodes in windows
# of 250, 500, 1000 and 2000 took 0.53, 0.68, 0.99 and 1.66 s against 3.9 s whole. Larger windows
# see longer patterns, smaller ones are cheaper: 500 keeps any pattern of up to 250 nodes whole.
OPTIMIZE_WINDOW_NODES = 500


def optimize(model: onnx.ModelProto, *, passes: Sequence[str] | None = None, window: int | None = OPTIMIZE_WINDOW_NODES) -> TransformResult:
    """onnxoptimizer.optimize with `passes`. Defaults to onnxoptimizer's fusion and elimination
    passes (onnxoptimizer.get_fuse_and_elimination_passes()). A graph of more than `window` nodes
    is optimized in windows of that many nodes (windows.py); `window=None` runs the whole graph at
    once, whatever its size."""
    passes = list(onnxoptimizer.get_fuse_and_elimination_passes() if passes is None else passes)
    crashed: dict[str, str] = {}

    def tool(part: onnx.ModelProto) -> onnx.ModelProto:
        return _without_crashing_passes(part, passes, crashed)

    if _PASSES_READING_WEIGHTS.intersection(passes):
        optimized, run = _whole_or_in_windows(model, tool, window)
        result = _result(model, optimized, passes, tool="onnxoptimizer")
    else:
        light, stash = protos.without_large_weights(model, _LARGE_WEIGHT_BYTES)
        optimized_light, run = _whole_or_in_windows(light, tool, window)
        # Whether anything changed is decided on the light models: comparing 100 MB of weights
        # that were set aside untouched would cost more than the optimization.
        modified = not _same_graph(light, optimized_light)
        result = _result(model, _with_weights(optimized_light, stash), passes, tool="onnxoptimizer", modified=modified)
    result.report.figures["windows"] = run.windows
    for reason in run.discarded:
        result.report.skipped([], reason)
    for name, message in crashed.items():
        result.report.skipped([], f"onnxoptimizer pass {name} crashed on this graph ({message}); the other passes ran without it")
    return result


def _without_crashing_passes(model: onnx.ModelProto, passes: list[str], crashed: dict[str, str]) -> onnx.ModelProto:
    """onnxoptimizer.optimize with `passes` (it serializes its input: `model` is not modified). A
    pass that raises (onnxoptimizer 0.4's fuse_qkv asserts in its C++ IR on three bias-free MatMuls
    over one input, an attention block's Q/K/V) is found by running each pass alone, recorded in
    `crashed` with its message, and the list is run again without it: one broken pass must not
    cost the model every other fusion."""
    try:
        return onnxoptimizer.optimize(model, [p for p in passes if p not in crashed])
    except RuntimeError:
        crashed.update(_crashing_passes(model, [p for p in passes if p not in crashed]))
    return onnxoptimizer.optimize(model, [p for p in passes if p not in crashed])


def _crashing_passes(model: onnx.ModelProto, passes: list[str]) -> dict[str, str]:
    """{pass: the first line of its error} for each of `passes` that raises when run alone."""
    crashed = {}
    for name in passes:
        try:
            onnxoptimizer.optimize(model, [name])
        except RuntimeError as error:
            crashed[name] = first_line(error)
    return crashed


def _whole_or_in_windows(model: onnx.ModelProto, tool, window: int | None) -> tuple[onnx.ModelProto, WindowRun]:
    if window is None or len(model.graph.node) <= window:
        return tool(model), WindowRun()
    return run_in_windows(model, tool, window)


def _with_weights(optimized: onnx.ModelProto, stash: dict[str, onnx.TensorProto]) -> onnx.ModelProto:
    """The placeholders back into initializers; weights no node reads any more are dropped."""
    graph = optimized.graph
    used = {name for node in graph.node for name in protos.names_read(node)} | {o.name for o in graph.output}
    inputs = [i for i in graph.input if i.name not in stash]
    del graph.input[:]
    graph.input.extend(inputs)
    for name in (name for name in stash if name in used):
        graph.initializer.add().CopyFrom(stash[name])  # extend() serializes each tensor: EncodeError at 2 GiB
    return optimized


def _result(before: onnx.ModelProto, after: onnx.ModelProto, passes: list[str], *, tool: str, modified: bool | None = None) -> TransformResult:
    report = TransformReport(figures={
        "nodes_before": len(before.graph.node),
        "nodes_after": len(after.graph.node),
        "passes": passes,
    })
    if modified is None:
        modified = not _same_graph(before, after)
    if modified:
        report.matched([], f"{tool}: {len(before.graph.node)} -> {len(after.graph.node)} nodes")
    else:
        report.skipped([], f"{tool} found nothing to change")
    return TransformResult(after if modified else gu.copy_model(before), modified, report)


def _same_graph(before: onnx.ModelProto, after: onnx.ModelProto) -> bool:
    """The same graph, ignoring value_info and node names (onnxsim adds both: annotations are not a
    change), compared without serializing the weights."""
    a, b = before.graph, after.graph
    return (
        len(a.node) == len(b.node)
        and all(_node_key(x) == _node_key(y) for x, y in zip(a.node, b.node))
        and [i.SerializeToString() for i in a.input] == [i.SerializeToString() for i in b.input]
        and [o.SerializeToString() for o in a.output] == [o.SerializeToString() for o in b.output]
        and _initializers(a) == _initializers(b)
    )


def _node_key(node: onnx.NodeProto) -> bytes:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.ClearField("name")
    return copy.SerializeToString(deterministic=True)


def _initializers(graph: onnx.GraphProto) -> dict[str, tuple]:
    return {t.name: (t.data_type, tuple(t.dims), t.raw_data, tuple(t.float_data), tuple(t.int64_data), tuple(t.int32_data)) for t in graph.initializer}

