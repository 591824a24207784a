"""zoo8: --mean/--std describe the preprocessing of one input. A model with an RGB image and a
1-channel mask, each read by a Conv, had a one-value --mean/--std folded into both (the mask too):
`optimize` wrote a model that computes on (mask - mean) / std, and verification passed because it
fed both inputs "raw" the same way. Several inputs a fold fits make the declaration ambiguous:
nothing is folded, with the reason, and `optimize` writes nothing."""

import numpy as np
import onnx
import pytest

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.transforms.fuse_input_normalization import fuse_input_normalization
from onnx2trt_check.transforms.run import folded_as_asked, run_transforms, settings_from

IMAGE_AND_MASK = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 3, 8, 8] x, float[1, 1, 8, 8] mask) => (float[1, 4, 8, 8] y) {
    a = Conv <pads = [1, 1, 1, 1]> (x, W)
    b = Conv <pads = [1, 1, 1, 1]> (mask, Wm)
    y = Add (a, b)
}
"""


def _model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(IMAGE_AND_MASK)
    rng = np.random.default_rng(0)
    model.graph.initializer.extend([
        onnx.numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "W"),
        onnx.numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "Wm"),
    ])
    return model


def test_one_value_mean_std_is_not_folded_into_every_input():
    result = fuse_input_normalization(_model(), mean=[0.5], std=[0.25])
    assert not result.modified
    assert any("x" in skip.nodes and "mask" in skip.nodes for skip in result.report.skips)
    assert "ambiguous" in result.report.skips[0].reason


def test_optimize_writes_nothing_for_an_ambiguous_external_normalization():
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32),
              "mask": (rng.uniform(size=(1, 1, 8, 8)) > 0.5).astype(np.float32)}]
    settings = settings_from(names=("fuse_input_normalization",), mean="0.5", std="0.25")
    with pytest.raises(ConfigError, match="ambiguous"):
        folded_as_asked(run_transforms(_model(), feeds, settings), settings)


def test_per_channel_mean_std_still_folds_into_the_one_input_it_fits():
    result = fuse_input_normalization(_model(), mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    assert result.modified
    assert [m.nodes[0] for m in result.report.matches] == ["x"]
