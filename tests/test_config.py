"""Tolerance configuration (config.py): sources, precedence, per-output values, bad values."""

import pytest

from onnx2trt_check.compare import Tolerance
from onnx2trt_check.config import (
    PRECISION_PROFILES,
    ToleranceConfig,
    parse_output_tolerance,
    pyproject_section,
    split_section,
)
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


def test_pyproject_section_outputs_and_precision_tables(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.onnx2trt_check]\natol = 1e-3\n[tool.onnx2trt_check.outputs.heatmap]\nrtol = 0.1\n'
        '[tool.onnx2trt_check.precision.int8]\nmin_sqnr_db = 25\n'
    )
    values, outputs, precisions = split_section(pyproject_section(tmp_path))
    assert values == {"atol": 1e-3} and outputs == {"heatmap": {"rtol": 0.1}} and precisions == {"int8": {"min_sqnr_db": 25}}


def test_precision_profiles_under_user_values():
    config = ToleranceConfig()
    assert config.for_output("y", "int8") == PRECISION_PROFILES["int8"]
    config.layer({"min_cosine": 0.5}, {"y": {"min_top1": 0.5}}, "test", {"int8": {"min_sqnr_db": 25}})
    int8 = config.for_output("y", "int8")
    assert (int8.atol, int8.min_cosine, int8.min_sqnr_db, int8.min_top1) == (None, 0.5, 25.0, 0.5)
    assert config.for_output("z", "fp16").min_sqnr_db == PRECISION_PROFILES["fp16"].min_sqnr_db
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        config.layer({}, {}, "test", {"int4": {}})


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
