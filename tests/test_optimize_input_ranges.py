"""zoo13: `optimize --mean/--std` fed raw 0..255 pixels (the model reads normalized values) verified
every step on values about 58 times too large, and said nothing about the data. The command now
prints the float inputs' range on its feeds, and with --mean/--std that they are the model's own
(normalized) inputs."""

from __future__ import annotations

import numpy as np
from tiny_models import classifier, save

from onnx2trt_check import api
from onnx2trt_check.cli.main import main


def _raw_pixels(tmp_path):
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 256, (2, 1, 3, 8, 8)).astype(np.float32))
    return data


def test_optimize_reports_the_range_of_its_feeds(tmp_path):
    model = tmp_path / "m.onnx"
    save(classifier(), model)
    result = api.optimize(str(model), inputs=str(_raw_pixels(tmp_path)))
    (note,) = result.input_ranges
    assert "x in [0, 255]" in note


def test_the_command_prints_it_and_names_the_normalized_inputs(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    save(classifier(), model)
    main(["optimize", str(model), "-o", str(tmp_path / "o.onnx"), "--inputs", str(_raw_pixels(tmp_path)), "--mean", "0.5", "--std", "0.25"])
    out = capsys.readouterr().out
    assert "note: float input values on the feeds: x in [0, 255]" in out
    assert "the model's own inputs, before the folded --mean/--std" in out
