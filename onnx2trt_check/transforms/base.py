"""The contract every transform follows.

A transform is a pure function `name(model: onnx.ModelProto, *, ...) -> TransformResult`. It never
mutates its input; graph edits go through onnx-ir (see docs/design.md). A pattern that does not
match is recorded as a `Skip` with its reason, never raised: exceptions are for misuse only.
"""

from __future__ import annotations

import dataclasses

import onnx


@dataclasses.dataclass(frozen=True)
class Match:
    """One place the transform rewrote: the nodes it consumed and what it did."""

    nodes: tuple[str, ...]
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Skip:
    """One candidate the transform left alone, and why."""

    nodes: tuple[str, ...]
    reason: str


@dataclasses.dataclass
class TransformReport:
    matches: list[Match] = dataclasses.field(default_factory=list)
    skips: list[Skip] = dataclasses.field(default_factory=list)
    # Free-form figures the transform measured (e.g. border error of a plain BN->Conv fold,
    # threshold mappings of remove_output_sigmoid). JSON-serializable values only.
    figures: dict[str, object] = dataclasses.field(default_factory=dict)

    def matched(self, nodes, detail: str = "") -> None:
        self.matches.append(Match(tuple(nodes), detail))

    def skipped(self, nodes, reason: str) -> None:
        self.skips.append(Skip(tuple(nodes), reason))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TransformResult:
    model: onnx.ModelProto
    modified: bool
    report: TransformReport
