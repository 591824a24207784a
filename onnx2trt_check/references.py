"""What a model's outputs are compared with, when it is not the model itself in ONNX Runtime.

* `ReferenceScript` (--reference-script FILE.py[:func], default `reference`): the source framework's
  outputs. func(feed) gets one feed dict {input name: numpy array} (a copy: the function may change it)
  and returns the outputs: a dict by ONNX output name, a list or tuple in output order, or one array
  for a one-output model; numpy arrays or anything np.asarray takes (torch: tensor.detach().numpy()).
  The user's script imports the framework; the suite never does.
* `ReferenceModel` (--reference-model ORIGINAL.onnx): an original ONNX model, run like the default
  reference (ONNX Runtime on the CPU, graph optimizations off), for a derived model (pruned,
  distilled, re-exported, QAT-exported) checked against it. Inputs and outputs are matched by name,
  else by position; the notes say which.

Both give (output names of the checked model, one dict of outputs per feed); context.py turns that
into the run's reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from . import runtime
from .errors import ConfigError
from .model import load_model
from .user_code import load_function

REFERENCE_KEY = "reference_source"  # RunOptions.extra key of the selected source
DEFAULT_REFERENCE_FUNCTION = "reference"
ORT_REFERENCE = "onnxruntime (CPU, graph optimizations off)"


class ReferenceScriptError(RuntimeError):
    """The user's reference function failed or returned something that is not the model's outputs."""


class ReferenceScript:
    def __init__(self, reference: str):
        self.function = load_function(reference, default=DEFAULT_REFERENCE_FUNCTION, option="--reference-script")
        self.label = f"reference script '{reference}'"

    def notes(self, model: onnx.ModelProto) -> list[str]:
        return [f"reference: the outputs of {self.label} (the source framework), not the ONNX file"]

    def check(self, model: onnx.ModelProto) -> None:
        """Nothing to match before running: the function's result is checked feed by feed."""

    def run(self, model: onnx.ModelProto, model_path: Path, feeds: Sequence[Mapping[str, np.ndarray]],
            extras: Sequence[Mapping[str, np.ndarray]] = ()) -> tuple[list[str], list[dict]]:
        """The function's outputs on `feeds` (`extras`: ReferenceModel.run's, none for a script)."""
        names = [output.name for output in model.graph.output]
        return names, [self._one(names, feed, index) for index, feed in enumerate(feeds)]

    def _one(self, names: list[str], feed: Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
        try:
            result = self.function({name: np.array(array, copy=True) for name, array in feed.items()})
        except Exception as exc:  # the user's code: its failure is the finding, in one line
            raise ReferenceScriptError(f"{self.label} raised {type(exc).__name__} on feed {index}: {exc}") from None
        return {name: _as_array(value, name, self.label) for name, value in _by_name(result, names, self.label).items()}


def _by_name(result, names: list[str], label: str) -> dict:
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        if missing:
            raise ReferenceScriptError(f"{label} returned keys {sorted(map(str, result))}, without output(s) {missing}; key the dict by ONNX output names")
        return {name: result[name] for name in names}
    if isinstance(result, list | tuple):
        if len(result) != len(names):
            raise ReferenceScriptError(f"{label} returned {len(result)} values for {len(names)} output(s) {names}")
        return dict(zip(names, result))
    if len(names) == 1:
        return {names[0]: result}
    raise ReferenceScriptError(f"{label} returned one {type(result).__name__} for {len(names)} outputs; return a dict by output name")


def _as_array(value, name: str, label: str) -> np.ndarray:
    try:
        return np.array(value, copy=True)  # a script that returns one reused buffer would leave every feed its last result
    except Exception as exc:  # noqa: BLE001 - e.g. a torch tensor that requires grad
        raise ReferenceScriptError(f"{label} returned a {type(value).__name__} for '{name}' that numpy cannot take ({exc}); "
                                   "return numpy arrays (torch: tensor.detach().numpy())") from None


@dataclasses.dataclass(frozen=True)
class Matching:
    """Checked model name -> original model name, for inputs and outputs, and how they were matched."""

    inputs: dict[str, str]
    outputs: dict[str, str]
    how: list[str]
    # Outputs of the original the checked model does not have: nothing is compared for them.
    unmatched: list[str] = dataclasses.field(default_factory=list)
    # Checked model input name -> the original's element type, where the two differ (a lossless cast).
    casts: dict[str, np.dtype] = dataclasses.field(default_factory=dict)
    # Inputs of the original the checked model does not take (original_inputs.py): fed to the original alone.
    original_only: tuple[str, ...] = ()

    def original_feed(self, feed: Mapping[str, np.ndarray], extra: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """One feed of the checked model as the original takes it: its input names and types, with
        `extra`, the feed's arrays of the inputs only the original takes."""
        mine = {self.inputs[name]: array.astype(self.casts[name]) if name in self.casts else array for name, array in feed.items()}
        return mine | dict(extra or {})


class ReferenceModel:
    def __init__(self, path: str | Path):
        self.loaded = load_model(Path(path), "--reference-model")
        self.label = f"original model '{self.loaded.path.name}'"

    @property
    def proto(self) -> onnx.ModelProto:
        return self.loaded.proto

    def matching(self, model: onnx.ModelProto) -> Matching:
        """How the checked model's inputs and outputs map to the original's; a ConfigError when
        they cannot (different counts and names)."""
        how = []
        mine, theirs = _input_names(model), _input_names(self.proto)
        # A distilled or pruned model may take fewer inputs than its original (DistilBERT has no
        # token_type_ids; its teacher BERT has): those are fed to the original alone (original_inputs.py).
        only = tuple(name for name in theirs if name not in mine) if set(mine) < set(theirs) else ()
        inputs = _match(mine, [name for name in theirs if name not in only], "input", how, self.label)
        if only:
            how.append(f"input(s) {', '.join(map(repr, only))} of {self.label} not in the model: fed to the original alone, from the data")
        outputs = _match([o.name for o in model.graph.output], [o.name for o in self.proto.graph.output], "output", how, self.label)
        unmatched = [o.name for o in self.proto.graph.output if o.name not in outputs.values()]
        if unmatched:  # a derived model that lost an output passed derived::parity on the others, without a word
            how.append(f"output(s) {', '.join(map(repr, unmatched))} of the original not in the model, not compared")
        how.extend(_fixed_dimensions(model, self.proto, inputs, self.label))
        return Matching(inputs, outputs, how, unmatched, self._casts(model, inputs, how), only)

    def _casts(self, model: onnx.ModelProto, inputs: dict[str, str], how: list[str]) -> dict[str, np.dtype]:
        """The inputs whose element type differs from the original's, cast when no value changes (an
        fp16 model's float16 feeds to an fp32 original: ONNX Runtime refused them, and every item of
        the run failed or skipped); a lossy cast would compare the models on different data, refused."""
        mine, theirs = _input_types(model), _input_types(self.proto)
        casts = {}
        for name, original in inputs.items():
            have, want = mine.get(name), theirs.get(original)
            if have is None or want is None or have == want:
                continue
            if have.kind not in "biuf" or want.kind not in "biuf" or not np.can_cast(have, want, "safe"):
                raise ConfigError(f"the model's input '{name}' is {have.name} and {self.label}'s '{original}' is {want.name}: "
                                  f"casting the feeds would change their values; give both models the same input type")
            casts[name] = want
            how.append(f"input '{name}' cast from {have.name} to {want.name} for the original (no value changes)")
        return casts

    def check(self, model: onnx.ModelProto) -> None:
        self.matching(model)

    def notes(self, model: onnx.ModelProto) -> list[str]:
        return [f"reference: {self.label} ({ORT_REFERENCE}); {'; '.join(self.matching(model).how)}"]

    def run(self, model: onnx.ModelProto, model_path: Path, feeds: Sequence[Mapping[str, np.ndarray]],
            extras: Sequence[Mapping[str, np.ndarray]] = ()) -> tuple[list[str], list[dict]]:
        """The original's outputs on `feeds`; `extras[i]` holds feed i's arrays of the inputs only the original takes."""
        matching = self.matching(model)
        session = runtime.create_session(self.loaded.path, optimized=False)
        outputs = runtime.run_feeds(session, [matching.original_feed(feed, extras[i] if extras else None) for i, feed in enumerate(feeds)])
        return list(matching.outputs), [{mine: out[theirs] for mine, theirs in matching.outputs.items()} for out in outputs]

    def original_feed(self, model: onnx.ModelProto, feed: Mapping[str, np.ndarray],
                      extra: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """One feed of the checked model as the original takes it (Matching.original_feed)."""
        return self.matching(model).original_feed(feed, extra)


def _input_types(model: onnx.ModelProto) -> dict[str, np.dtype]:
    """Element type of each tensor input whose type the model states."""
    types = {}
    for value in model.graph.input:
        element = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
        if element:
            types[value.name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(element))
    return types


def _fixed_dimensions(model: onnx.ModelProto, original: onnx.ModelProto, inputs: dict[str, str], label: str) -> list[str]:
    """A note per input dimension the original leaves free and the checked model fixes (hunt19: a
    pruned model re-exported without dynamic axes, its batch fixed to 2, passed derived::parity at 2
    without a word; the deployment feeding the original's other batch sizes finds it refuses them)."""
    theirs = {value.name: value for value in original.graph.input}
    notes = []
    for value in model.graph.input:
        other = theirs.get(inputs.get(value.name, ""))
        if other is None or not (value.type.HasField("tensor_type") and other.type.HasField("tensor_type")):
            continue
        mine_dims, their_dims = value.type.tensor_type.shape.dim, other.type.tensor_type.shape.dim
        if len(mine_dims) != len(their_dims):
            continue
        fixed = [f"{axis} ({their.dim_param or 'unnamed'} -> {mine.dim_value})" for axis, (mine, their) in enumerate(zip(mine_dims, their_dims))
                 if mine.HasField("dim_value") and not their.HasField("dim_value")]
        if fixed:
            notes.append(f"input '{value.name}' fixes dimension(s) {', '.join(fixed)} that {label} leaves free: it refuses the "
                         "other sizes the original takes, and is compared at its own only")
    return notes


def _input_names(model: onnx.ModelProto) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initializers]


def _match(mine: list[str], theirs: list[str], kind: str, how: list[str], label: str) -> dict[str, str]:
    if set(mine) <= set(theirs) and (kind == "output" or set(mine) == set(theirs)):
        order = [name for name in theirs if name in mine]
        # plant12: outputs listed in another order passed, names kept; a consumer that reads them
        # by position (session.run(None)[0], engine bindings by index) gets another output
        how.append(f"{kind}s matched by name" + ("" if mine == order else f", in another order than in {label} ({', '.join(mine)} "
                                                 f"vs {', '.join(order)}): code that reads them by position gets other values"))
        return {name: name for name in mine}
    if len(mine) == len(theirs):
        pairs = ", ".join(f"'{a}' <- '{b}'" for a, b in zip(mine, theirs) if a != b)
        how.append(f"{kind}s matched by position ({pairs})")
        return dict(zip(mine, theirs))
    raise ConfigError(f"the model's {kind}s {mine} match {label}'s {theirs} neither by name nor by count; "
                      f"give both models the same {kind} names")
