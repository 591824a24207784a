"""Items selected by id on the command line: `pytest --model m.onnx "m.onnx::target[ort]::accuracy"`.

pytest 9 reads everything after an argument's first "[" as a parametrization, so below the model it
looks for a node named "target" and finds none ("not found", exit 4). An argument that names one of
the run's models with `::` parts is therefore handed to pytest as the model's path, and the model's
items are picked here, part by part. As in pytest's own matching, a part without brackets also
matches the bracketed names it is the stem of (`m.onnx::target` selects every target[...] family).

pytest 9 also prints such an id with one "]" too many in its FAILED/ERROR lines
(`m.onnx::target[ort]::accuracy]`: it rebuilds the id from the parameters it parsed); that form,
copied back as an argument, selects the item too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class Selection:
    """The `::` parts asked for per model path; a model given without parts runs whole."""

    def __init__(self, wanted: dict[Path, list[tuple[str, ...]]]):
        self.wanted = wanted

    @classmethod
    def split(cls, args: Iterable[str], model_paths: Iterable[Path], invocation_dir: Path) -> tuple[list[str], Selection]:
        """(the arguments pytest should collect, the selection to apply to the collected items)."""
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
                wanted.setdefault(path, []).append(_parts_of(rest))
            else:
                whole.add(path)
        return list(dict.fromkeys(kept)), cls({path: parts for path, parts in wanted.items() if path not in whole})

    def selected(self, path: Path, parts: tuple[str, ...]) -> bool:
        wanted = self.wanted.get(path)
        return wanted is None or any(_matches(want, parts) for want in wanted)

    def pytest_collection_modifyitems(self, config, items: list) -> None:
        if not self.wanted:
            return
        chosen = [self.selected(item.path, _parts(item)) for item in items]
        keep = [item for item, take in zip(items, chosen) if take]
        dropped = [item for item, take in zip(items, chosen) if not take]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep


def _parts_of(rest: str) -> tuple[str, ...]:
    """'target[ort]::accuracy' -> ('target[ort]', 'accuracy'), also from pytest 9's 'accuracy]'."""
    *parents, last = rest.split("::")
    if last.endswith("]") and last.count("]") > last.count("["):
        last = last[:-1]
    return (*parents, last)


def _parts(item) -> tuple[str, ...]:
    check = getattr(item, "check", None)
    return (check.family, check.name) if check is not None else (item.name,)


def _matches(want: tuple[str, ...], have: tuple[str, ...]) -> bool:
    if len(want) > len(have):
        return False
    return all(w == h or ("[" not in w and h.split("[")[0] == w) for w, h in zip(want, have))
