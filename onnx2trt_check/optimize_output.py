"""What `optimize` writes: the optimized model and, when output_tail moved a tail out of the graph,
its post-processing recipe beside it (OUT.recipe.json), as one set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from . import fileio
from .transforms.tail_recipe import is_recipe_file, recipe_document, recipe_path

if TYPE_CHECKING:
    from .transforms.pipeline import PipelineResult
    from .transforms.run import TransformSettings


def recipe_target(target: Path | None, settings: TransformSettings, *, force: bool) -> Path | None:
    """OUT.recipe.json when output_tail may write one; refused up front if it exists without force."""
    if target is None or "output_tail" not in settings.selected():
        return None
    path = recipe_path(target)
    fileio.refuse_overwrite(path, force=force)
    return path


def recipe_of(pipeline: PipelineResult, target: Path | None) -> dict | None:
    """The recipe document of the output_tail step that moved a tail, or None."""
    step = next((s for s in pipeline.steps if s.name == "output_tail" and s.modified and s.passed), None)
    return recipe_document(step.report, model_file=target.name if target else "<not written>") if step else None


def write_optimized(target: Path, model: onnx.ModelProto, path: Path | None, recipe: dict | None, *, force: bool) -> tuple[Path, Path | None]:
    """The model and its recipe as one (fileio.file_set: a failure or Ctrl-C midway leaves the old
    pair). Without a recipe, a stale recipe of ours at the path is removed (the model it described
    is being replaced, which took force), never another file. (fileio's functions are looked up
    when called, so a test can stand in for one.)"""
    stale = [path] if path is not None and recipe is None and path.exists() and is_recipe_file(path) else []
    with fileio.file_set(target.parent, force=force, remove=stale) as stage:
        fileio.save_model(model, stage / target.name)
        if path is not None and recipe is not None:
            fileio.atomic_write_text(stage / path.name, json.dumps(recipe, indent=2) + "\n")
    return target, path if recipe is not None else None
