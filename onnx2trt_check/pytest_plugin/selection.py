"""Items selected by id on the command line: `pytest --model m.onnx "m.onnx::target::accuracy[ort]"`.

An item's id is `<model>::<family>::<check>[<parameter>]` (state.item_nodeid). pytest cannot find
such ids below a model itself (it collects the model as a file, then looks for nodes by name), so an
argument that names one of the run's models with `::` parts is handed to pytest as the model's path,
and the model's items are picked here. As in pytest's own matching, a part may leave things out:
`m.onnx::target` selects every target, `m.onnx::target::accuracy` every target's accuracy,
`m.onnx::target[ort]` every check of that one target. The form of earlier versions,
`m.onnx::target[ort]::accuracy`, is still read (ids kept in CI scripts), and so is the form pytest 9
printed for it, with one "]" too many.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wanted:
    """One id's parts below the model; None matches anything."""

    family: str
    check: str | None = None
    parameter: str | None = None

    @classmethod
    def parse(cls, rest: str) -> Wanted:
        parameter = None
        parts = []
        for part in rest.split("::"):
            stem, bracket, inside = part.partition("[")
            if bracket:
                parameter = inside.rstrip("]")
            parts.append(stem.rstrip("]"))
        return cls(parts[0], parts[1] if len(parts) > 1 else None, parameter)

    def matches(self, family: str, check: str, parameter: str | None) -> bool:
        return (self.family == family and self.check in (None, check)
                and self.parameter in (None, parameter))


class Selection:
    """The ids asked for per model path; a model given without parts runs whole."""

    def __init__(self, wanted: dict[Path, list[Wanted]]):
        self.wanted = wanted

    @classmethod
    def split(cls, args: Iterable[str], model_paths: list[Path], invocation_dir: Path) -> tuple[list[str], Selection]:
        """(the arguments pytest should collect, the selection to apply to the collected items).
        Arguments that name none of the models (the user's own test files) leave every model in."""
        models = set(model_paths)
        kept, wanted, whole = [], {}, set()
        for arg in args:
            path_text, separator, rest = arg.partition("::")
            path = Path(os.path.abspath(invocation_dir / path_text))
            if path not in models:
                kept.append(arg)
                continue
            kept.append(str(path))
            if separator:
                wanted.setdefault(path, []).append(Wanted.parse(rest))
            else:
                whole.add(path)
        if not wanted and not whole:  # `pytest --model m.onnx test_mine.py`: the models run beside the user's tests
            kept += [str(path) for path in model_paths]
        return list(dict.fromkeys(kept)), cls({path: parts for path, parts in wanted.items() if path not in whole})

    def selected(self, path: Path, family: str, check: str, parameter: str | None) -> bool:
        wanted = self.wanted.get(path)
        return wanted is None or any(want.matches(family, check, parameter) for want in wanted)

    def pytest_collection_modifyitems(self, config, items: list) -> None:
        if not self.wanted:
            return
        chosen = [self.selected(item.path, *_parts(item)) for item in items]
        keep = [item for item, take in zip(items, chosen) if take]
        dropped = [item for item, take in zip(items, chosen) if not take]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep


def _parts(item) -> tuple[str, str, str | None]:
    """(family stem, check, parameter) of an item: ('target', 'accuracy', 'ort')."""
    check = getattr(item, "check", None)
    if check is None:  # a refused model's model::load
        return item.parent.name, item.name, None
    return check.stem, check.name, check.parameter
