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
