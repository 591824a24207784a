"""Tolerance configuration (config.py): sources, precedence, per-output values, bad values."""

import json

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


# ---------------------------------------------------------------- the pytest ini, read as pytest reads it


INI_FILES = {
    "pytest.ini": "[pytest]\nonnx2trt_min_sqnr_db = 25\nonnx2trt_output_tolerances =\n    y:min_top1=0\n    z:atol=1\n",
    ".pytest.ini": "[pytest]\nonnx2trt_min_sqnr_db = 25\nonnx2trt_output_tolerances =\n    y:min_top1=0\n    z:atol=1\n",
    "tox.ini": "[tox]\nenvlist = py\n[pytest]\nonnx2trt_min_sqnr_db = 25\nonnx2trt_output_tolerances =\n    y:min_top1=0\n    z:atol=1\n",
    "setup.cfg": "[metadata]\nname = x\n[tool:pytest]\nonnx2trt_min_sqnr_db = 25\nonnx2trt_output_tolerances =\n    y:min_top1=0\n    z:atol=1\n",
    "pyproject.toml": '[tool.pytest.ini_options]\nonnx2trt_min_sqnr_db = "25"\nonnx2trt_output_tolerances = ["y:min_top1=0", "z:atol=1"]\n',
    "pytest.toml": '[pytest]\nonnx2trt_min_sqnr_db = "25"\nonnx2trt_output_tolerances = ["y:min_top1=0", "z:atol=1"]\n',
}


@pytest.mark.parametrize("name", INI_FILES)
def test_the_pytest_ini_is_read_from_every_file_pytest_reads(pytester, name):
    """read_ini_tolerances gives what pytest's own getini gives in the same folder."""
    from onnx2trt_check.config import read_ini_tolerances

    pytester.path.joinpath(name).write_text(INI_FILES[name])
    pytester.makeconftest("""
        import json
        def pytest_configure(config):
            keys = ("onnx2trt_atol", "onnx2trt_rtol", "onnx2trt_min_cosine", "onnx2trt_min_sqnr_db")
            seen = {key: config.getini(key) for key in keys}
            seen["lines"] = config.getini("onnx2trt_output_tolerances")
            open("seen.json", "w").write(json.dumps(seen))
    """)
    pytester.runpytest_inprocess("--co", "-p", "no:cacheprovider")
    seen = json.loads((pytester.path / "seen.json").read_text())
    values, lines = read_ini_tolerances(pytester.path)
    assert {k: None if v is None else str(v) for k, v in values.items()} == {k.removeprefix("onnx2trt_"): v for k, v in seen.items() if k != "lines"}
    assert list(lines) == seen["lines"] == ["y:min_top1=0", "z:atol=1"]


def test_the_first_pytest_file_wins_and_files_without_a_pytest_table_do_not_count(tmp_path):
    from onnx2trt_check.config import project_root, read_ini_tolerances

    (tmp_path / "setup.cfg").write_text("[tool:pytest]\nonnx2trt_atol = 3\n")
    (tmp_path / "tox.ini").write_text("[tox]\nenvlist = py\n")  # no [pytest]: not pytest's file
    assert read_ini_tolerances(tmp_path)[0]["atol"] == "3"
    (tmp_path / "pyproject.toml").write_text("[tool.onnx2trt_check]\natol = 5\n")  # no [tool.pytest]: not pytest's ini
    assert read_ini_tolerances(tmp_path)[0]["atol"] == "3"
    (tmp_path / "pytest.ini").write_text("")  # pytest.ini is pytest's file even when empty
    empty = ({"atol": None, "rtol": None, "min_cosine": None, "min_sqnr_db": None}, [])
    assert read_ini_tolerances(tmp_path) == empty
    (tmp_path / "models").mkdir()  # a run from a sub-folder finds the project above it, as pytest does
    assert read_ini_tolerances(tmp_path / "models") == empty and project_root(tmp_path / "models")[0] == tmp_path.resolve()


def test_project_tolerances_layer_pyproject_then_ini_then_command_line(tmp_path):
    from onnx2trt_check.config import project_tolerances

    (tmp_path / "pyproject.toml").write_text('[tool.onnx2trt_check.precision.int8]\nmin_sqnr_db = 30\nmin_cosine = 0.5\n'
                                            '[tool.pytest.ini_options]\nonnx2trt_min_sqnr_db = "24"\n')
    # the precision table applies over the global ini value (as in pytest)
    assert project_tolerances(tmp_path).for_output("y", "int8").min_sqnr_db == 30.0
    assert project_tolerances(tmp_path).for_output("y", "fp32").min_sqnr_db == 24.0
    floor = project_tolerances(tmp_path, command_line={"min_cosine": None}, output_tolerances=["y:min_sqnr_db=12"]).for_output("y", "int8")
    assert (floor.min_sqnr_db, floor.min_cosine, floor.min_top1) == (12.0, 0.5, 0.95)


def test_the_library_and_the_pytest_face_name_the_same_ini_keys():
    from onnx2trt_check.config import INI_OUTPUT_TOLERANCES, INI_TOLERANCES
    from onnx2trt_check.pytest_plugin import options

    assert INI_TOLERANCES == options.INI_TOLERANCES and INI_OUTPUT_TOLERANCES == "onnx2trt_output_tolerances"
