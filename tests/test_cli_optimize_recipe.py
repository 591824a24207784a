"""`onnx2trt-check optimize` and api.optimize with output_tail: the recipe is printed and written
beside the model (atomically, never over a file without --force), and it restores the old output."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from test_transform_checks import conv_bn_sigmoid
from test_transform_output_tail import MODELS, _tail_detector

import onnx2trt_check as o2t
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError
from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.tail_recipe import apply_recipe


@pytest.fixture
def detector(tmp_path):
    path = tmp_path / "det.onnx"
    onnx.save(_tail_detector("nearest"), str(path))
    return path


def _feeds(count=6):
    with np.load(MODELS / "heatmap_sigmoid.npz") as data:
        return [{"input": x} for x in data["input"][:count]]


def test_prints_and_writes_a_recipe_that_restores_the_original(detector, tmp_path, capsys):
    out = tmp_path / "det.opt.onnx"
    assert main(["optimize", str(detector), "-o", str(out), "--passes", "output_tail"]) == 0
    printed = capsys.readouterr().out
    assert "output 'heatmap' is now [1, 1, 16, 16] (was [1, 32, 32, 1]); post-processing restores it, bit-exact:" in printed
    assert "1. resize nearest x(1, 1, 2, 2) (half_pixel, round_prefer_floor)" in printed
    assert "2. transpose perm (0, 2, 3, 1)" in printed
    document = json.loads((tmp_path / "det.opt.recipe.json").read_text())
    assert document["model"] == "det.opt.onnx" and document["kind"] == "postprocessing_recipe"
    steps = document["outputs"]["heatmap"]["steps"]
    optimized, original = onnx.load(str(out)), onnx.load(str(detector))
    assert {n.op_type for n in optimized.graph.node}.isdisjoint({"Transpose", "Resize"})
    for new, old in zip(run_model(optimized, _feeds()), run_model(original, _feeds())):
        np.testing.assert_array_equal(apply_recipe(steps, new["heatmap"]), old["heatmap"])


def test_an_existing_recipe_is_refused_before_anything_runs_or_is_written(detector, tmp_path, capsys):
    out, recipe = tmp_path / "det.opt.onnx", tmp_path / "det.opt.recipe.json"
    recipe.write_text("mine")
    assert main(["optimize", str(detector), "-o", str(out), "--output-tail"]) == 4
    assert "det.opt.recipe.json' already exists; pass --force" in capsys.readouterr().err
    assert not out.exists() and recipe.read_text() == "mine"
    with pytest.raises(ConfigError, match="already exists"):
        o2t.optimize(detector, output=out, output_tail=True)
    assert main(["optimize", str(detector), "-o", str(out), "--force", "--passes", "output_tail"]) == 0
    assert json.loads(recipe.read_text())["outputs"]["heatmap"]["exact"] is True


def test_force_removes_a_stale_recipe_of_ours_but_no_other_file(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(conv_bn_sigmoid(), str(model))  # no tail: nothing to post-process
    out, recipe = tmp_path / "out.onnx", tmp_path / "out.recipe.json"
    recipe.write_text(json.dumps({"kind": "postprocessing_recipe"}))
    result = o2t.optimize(model, output=out, force=True, output_tail=True)
    assert result.recipe is None and result.written == out and not recipe.exists()
    recipe.write_text("someone else's notes")
    o2t.optimize(model, output=out, force=True, output_tail=True)
    assert recipe.read_text() == "someone else's notes"


def test_api_returns_the_recipe_without_writing(detector, tmp_path):
    result = o2t.optimize(detector, passes=["output_tail"])
    assert result.written is None and result.recipe_written is None
    assert result.recipe["outputs"]["heatmap"]["new_shape"] == [1, 1, 16, 16]
    assert list(tmp_path.iterdir()) == [detector]


def test_by_default_optimize_keeps_the_output_layout(detector, tmp_path, capsys):
    """The written model is what gets deployed: its outputs keep their layout unless the user opts
    into output_tail, whose recipe the post-processing must then apply."""
    out = tmp_path / "det.opt.onnx"
    assert main(["optimize", str(detector), "-o", str(out)]) == 0
    assert "output_tail" not in capsys.readouterr().out
    optimized, original = onnx.load(str(out)), onnx.load(str(detector))
    assert not (tmp_path / "det.opt.recipe.json").exists()
    for new, old in zip(run_model(optimized, _feeds()), run_model(original, _feeds())):
        assert new["heatmap"].shape == old["heatmap"].shape
    assert "output_tail" in o2t.optimize(detector, output_tail=True).settings.selected()
