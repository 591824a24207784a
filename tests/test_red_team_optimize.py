"""Red-team findings on `optimize`: --mean/--std promise a result that reads raw values; a result
written without that preprocessing folded in would compute on raw pixels as if normalized."""

import pytest
from tiny_models import classifier, save

from onnx2trt_check import api
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError


def test_mean_std_that_cannot_be_folded_write_nothing(tmp_path):
    model = save(classifier(), tmp_path / "m.onnx")  # 3 input channels
    with pytest.raises(ConfigError, match="could not be folded.*2 channels"):
        api.optimize(model, output=tmp_path / "out.onnx", mean=[0.5, 0.5], std=[0.2, 0.2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_mean_std_with_passes_that_leave_the_fold_out_are_a_usage_error(tmp_path, capsys):
    model = save(classifier(), tmp_path / "m.onnx")
    code = main(["optimize", str(model), "-o", str(tmp_path / "out.onnx"), "--passes", "fold_conv_bn", "--mean", "0.5", "--std", "0.2"])
    assert code == 4 and "fuse_input_normalization, which the selected transforms leave out" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()


def test_mean_std_that_fit_are_folded_and_written(tmp_path):
    model = save(classifier(), tmp_path / "m.onnx")
    result = api.optimize(model, output=tmp_path / "out.onnx", mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    assert result.passed and result.written is not None
    assert next(s for s in result.pipeline.steps if s.name == "fuse_input_normalization").modified
