"""gate13: a default run on a machine without a GPU (or without calibration data) has no trt-* (or
ort-int8) accuracy item, and nothing said those targets were not checked: "15 passed" read as the
whole deployment checked. The run's notes now name each target the default selection left out, with
the reason."""

from __future__ import annotations

import json

import numpy as np
from tiny_models import classifier, save

from onnx2trt_check.targets import TARGETS


def _notes(pytester, *args) -> list[str]:
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "-k", "reference", "--report-json", "r.json", "-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    notes = json.loads((pytester.path / "r.json").read_text())["notes"]
    assert all(f"note: {note}" in result.stdout.str() for note in notes)
    return [n for n in notes if n.startswith("targets not run")]


def test_every_target_a_default_run_leaves_out_is_named_with_its_reason(pytester):
    notes = _notes(pytester)
    left_out = [t for t in TARGETS if t.unavailable_reason()]
    assert "ort-int8" in {t.name for t in left_out}  # no calibration data
    for target in left_out:
        assert any(target.name in note and target.unavailable_reason() in note for note in notes), (target.name, notes)
    assert not any("target[ort]" in n or " ort," in n for n in notes)


def test_no_such_note_for_targets_the_user_selected_or_that_run(pytester):
    assert _notes(pytester, "--target", "ort") == []
    rng = np.random.default_rng(0)
    np.savez(pytester.path / "calib.npz", x=rng.random((8, 1, 3, 8, 8), dtype=np.float32))
    assert not any("ort-int8" in note for note in _notes(pytester, "--calibration-data", "calib.npz"))
