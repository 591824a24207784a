"""Red-team finding on config.py: a misspelt key in [tool.onnx2trt_check] (atoll = 0) was ignored,
so the defaults stayed in force and the run passed under tolerances the project never chose."""

import pytest

from onnx2trt_check.config import layered_tolerances
from onnx2trt_check.errors import ConfigError


def test_a_misspelt_key_of_the_pyproject_section_is_a_usage_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.onnx2trt_check]\natoll = 0\n")
    with pytest.raises(ConfigError, match="unknown key 'atoll'; valid keys: atol"):
        layered_tolerances(tmp_path)


def test_every_documented_key_of_the_pyproject_section_is_taken(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.onnx2trt_check]\natol = 0.5\nmin_sqnr_db = 30\nbaseline_dir = "baselines"\n'
        "[tool.onnx2trt_check.outputs.logits]\nrtol = 0.1\n[tool.onnx2trt_check.precision.int8]\nmin_top1 = 0.9\n")
    tolerances = layered_tolerances(tmp_path)
    assert tolerances.for_output("logits").atol == 0.5 and tolerances.for_output("logits").rtol == 0.1
    assert tolerances.for_output("other", "int8").min_top1 == 0.9
