"""A --reference-script example: the PyTorch module convbn_classifier.onnx was exported from.

    pytest --model models/convbn_classifier.onnx --inputs models/convbn_classifier.npz \
           --reference-script models/torch_reference.py

`reference(feed)` gets one feed dict {input name: numpy array} and returns the module's outputs by
ONNX output name. The weights are read from the ONNX file's initializers, which the exporter named
after the module's state_dict; with your own model, load your checkpoint instead. Needs torch (the
`models` extra); the suite itself never imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from networks import convbn_classifier  # noqa: E402  models/networks.py, beside this file


def _module(onnx_file: Path) -> torch.nn.Module:
    module = convbn_classifier().eval()
    weights = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy()) for t in onnx.load(str(onnx_file)).graph.initializer}
    missing, unexpected = module.load_state_dict(weights, strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise RuntimeError(f"the ONNX initializers do not fit the module: missing {missing}, unexpected {unexpected}")
    return module


MODULE = _module(HERE / "convbn_classifier.onnx")


def reference(feed: dict) -> dict:
    with torch.no_grad():
        return {"logits": MODULE(torch.from_numpy(feed["input"])).numpy()}
