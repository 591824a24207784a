"""Tolerance configuration (config.py): sources, precedence, per-output values, bad values."""

import pytest

from onnx2trt_check.compare import Tolerance
from onnx2trt_check.config import ToleranceConfig, parse_output_tolerance, pyproject_section, split_section
from onnx2trt_check.errors import ConfigError


def test_later_layers_win_and_per_output_applies_on_top():
    config = ToleranceConfig()
    config.layer({"atol": 1e-3, "rtol": 1e-2}, {"logits": {"min_sqnr_db": 30}}, "pyproject")
    config.layer({"atol": 5e-4}, {}, "command line")
    assert config.for_output("other") == Tolerance(atol=5e-4, rtol=1e-2)
    assert config.for_output("logits") == Tolerance(atol=5e-4, rtol=1e-2, min_sqnr_db=30.0)


def test_per_output_overrides_a_later_global_value():
    config = ToleranceConfig()
    config.layer({}, {"logits": {"atol": 1.0}}, "pyproject")
    config.layer({"atol": 1e-6}, {}, "command line")
    assert config.for_output("logits").atol == 1.0


def test_pyproject_section_and_outputs_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.onnx2trt_check]\natol = 1e-3\n[tool.onnx2trt_check.outputs.heatmap]\nrtol = 0.1\n')
    values, outputs = split_section(pyproject_section(tmp_path))
    assert values == {"atol": 1e-3} and outputs == {"heatmap": {"rtol": 0.1}}


def test_broken_pyproject_is_a_config_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.onnx2trt_check\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        pyproject_section(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [("logits", "malformed"), ("logits:atol", "malformed"), ("logits:speed=1", "unknown tolerance 'speed'"), ("logits:atol=fast", "not a number"), ("logits:atol=-1", "non-negative")],
)
def test_bad_output_tolerances(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_output_tolerance(text)


def test_output_names_may_contain_colons():
    assert parse_output_tolerance("head:0:atol=1e-3") == ("head:0", {"atol": 1e-3})
