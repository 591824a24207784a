"""The task metrics recorded in models/manifest.json: computed by build.py when the models are
built and again by tests/test_sample_models.py on the committed files. Kept free of torch and
scikit-learn so the tests can import it."""

from __future__ import annotations

import numpy as np


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.reshape(len(labels), -1).argmax(axis=1) == labels))


def pixel_accuracy(heatmaps: np.ndarray, masks: np.ndarray) -> float:
    return float(np.mean((heatmaps > 0.5) == (masks > 0.5)))


def mask_iou(heatmaps: np.ndarray, masks: np.ndarray) -> float:
    predicted, truth = heatmaps > 0.5, masks > 0.5
    return float(np.sum(predicted & truth) / np.sum(predicted | truth))


def task_metric(outputs: dict, labels: np.ndarray) -> dict[str, float]:
    """The sample models' task figures for `pytest --model models --metric models/metrics.py:task_metric`
    (one label file per model with --labels 'models/{model}.labels.npy'): top-1 accuracy for the
    classifiers, pixel accuracy and mask IoU for the heatmap model (the same figures as the manifest)."""
    if "heatmap" in outputs:
        heatmaps = np.asarray(outputs["heatmap"])
        masks = labels.reshape(heatmaps.shape)
        return {"pixel_accuracy": pixel_accuracy(heatmaps, masks), "mask_iou": mask_iou(heatmaps, masks)}
    return {"top1": top1_accuracy(np.asarray(outputs["logits"]), labels)}
