"""The CI gate as the project runs it on itself: baselines written by `--baseline-update`, then a
regression in a transform that the int8 pipeline runs (fold_conv_bn, folding BN before the weights
are quantized) fails the gate through the deployed int8 artifact's figures, naming the model, the
target, the figure and the ratio."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx

from onnx2trt_check.quant import pipeline
from onnx2trt_check.transforms.base import TransformResult

MODELS = Path(__file__).resolve().parents[1] / "models"
GATE = ("--model", "m.onnx", "--inputs", "m.npz", "--calibration-data", "m.calib.npz", "--calibration-method", "max",
        "--target", "ort-int8", "-k", "baseline", "--baseline-dir", "baselines", "-p", "no:randomly")


def _sample(pytester) -> None:
    for suffix in (".onnx", ".npz", ".calib.npz"):
        shutil.copy(MODELS / f"convbn_classifier{suffix}", pytester.path / f"m{suffix}")


def _coarser_fold(original):
    """fold_conv_bn whose folded weights come out rounded to 2 significant digits: a plausible bug
    (a low-precision detour in the fold)."""
    def fold(model):
        result = original(model)
        for tensor in result.model.graph.initializer:
            array = np.asarray(onnx.numpy_helper.to_array(tensor), np.float64)
            if array.dtype.kind == "f" and array.ndim == 4:
                rounded = np.array([float(f"{v:.2g}") for v in array.ravel()], np.float32).reshape(array.shape)
                tensor.CopyFrom(onnx.numpy_helper.from_array(rounded, tensor.name))
        return TransformResult(result.model, result.modified, result.report)
    return fold


def test_a_regression_in_a_transform_fails_the_gate_naming_model_target_figure_and_ratio(pytester, monkeypatch):
    _sample(pytester)
    assert pytester.runpytest_inprocess(*GATE, "--baseline-update").ret == 0
    assert pytester.runpytest_inprocess(*GATE).ret == 0  # the gate passes on what it recorded
    monkeypatch.setattr(pipeline, "fold_conv_bn", _coarser_fold(pipeline.fold_conv_bn))
    result = pytester.runpytest_inprocess(*GATE)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*regression(s) against baseline*m*ort-int8*",
        "*logits.sqnr_db: baseline *, current *, ratio *x [[]regression[]]*",
        "FAILED m.onnx::baseline::accuracy[[]ort-int8[]]*",
    ])
