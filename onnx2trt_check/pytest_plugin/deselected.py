"""Items that -k, -m, --deselect or an item id left out, counted per model for the summary and the
JSON report. pytest prints "N deselected" on its own line only without xdist (under xdist the
workers deselect and the controller says nothing), and our summary listed the models that ran: a
model whose items were all deselected vanished from the summary and the report without a word.

A refused model's `model::load` item is never deselected (zoo16): `pytest --model folder -k target`
with one model whose data file was missing was a green run, that model named only as not run."""

from __future__ import annotations

import pytest

from .state import RefusedItem

_WORKER_KEY = "onnx2trt_check_deselected"


class Deselected:
    """Registered for a run with --model; on the xdist controller it takes the workers' counts."""

    def __init__(self, models: set[str]):
        self.models = models  # the display ids of the run's models (the first part of their item ids)
        self.counts: dict[str, int] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(self, items: list):
        """The load items of refused models are taken out while -k, -m, --deselect and the item ids
        select, then put back: the model cannot be checked, and that fails the run. (--lf's wrapper
        runs outside this one: it re-runs a load item that failed, as any other.)"""
        refused = [item for item in items if isinstance(item, RefusedItem)]
        items[:] = [item for item in items if not isinstance(item, RefusedItem)]
        try:
            return (yield)
        finally:
            items[:0] = refused

    def pytest_deselected(self, items) -> None:
        for item in items:
            model = item.nodeid.split("::")[0]
            if model in self.models:  # a user's own test beside the models is pytest's to count
                self.counts[model] = self.counts.get(model, 0) + 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workeroutput"):
            session.config.workeroutput[_WORKER_KEY] = self.counts

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """Every worker collects and deselects the same items: any one's counts are the run's."""
        for model, count in getattr(node, "workeroutput", {}).get(_WORKER_KEY, {}).items():
            self.counts[model] = max(self.counts.get(model, 0), count)

    def notes(self, ran: set[str]) -> list[str]:
        """One note per model with deselected items; `ran`: the models with a recorded outcome."""
        return [f"{model}: {count} item(s) deselected (-k, -m, --deselect or item ids), not run"
                + ("" if model in ran else "; no item of this model ran, so nothing of it was checked")
                for model, count in self.counts.items()]
