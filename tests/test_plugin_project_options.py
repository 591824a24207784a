"""A project whose own conftest.py defines --model or --seed (common in ML test suites): once this
package was installed, its pytest plugin (loaded in every run) had added those flags first, and the
project's whole test suite failed to start ("argparse.ArgumentError: argument --model: conflicting
option string"). Our options are now added after the project's initial conftest.py files; a flag
the project has is its own, and ours is --onnx2trt-<flag>, with a note."""

import shutil
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[1] / "models" / "convbn_classifier.onnx"
PROJECT_CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--model", action="store", default="resnet18")
    parser.addoption("--seed", type=int, default=7)
"""
PROJECT_TEST = """
def test_the_projects_own_options(request):
    assert request.config.getoption("--model") == "{model}"
    assert request.config.getoption("--seed") == {seed}
"""


@pytest.fixture
def project(pytester):
    pytester.makeconftest(PROJECT_CONFTEST)
    shutil.copy(MODEL, pytester.path / "m.onnx")
    return pytester


def test_the_projects_suite_runs_with_its_own_model_and_seed(project):
    project.makepyfile(test_own=PROJECT_TEST.format(model="vit", seed=3))
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "--model", "vit", "--seed", "3", "test_own.py")
    result.assert_outcomes(passed=1)


def test_our_checks_run_under_the_prefixed_flags_and_say_so(project):
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "--onnx2trt-model", "m.onnx", "--onnx2trt-seed", "5", "--seed", "3",
                                         "--target", "ort", "-k", "accuracy")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "note: --model is this project's own option (its conftest.py); onnx2trt_check's is --onnx2trt-model here",
        "note: --seed is this project's own option (its conftest.py); onnx2trt_check's is --onnx2trt-seed here",
        "*inputs: random(seed=5, n=4)*",
    ])


def test_the_value_of_a_flag_is_no_path_to_find_conftest_files_by(pytester, tmp_path_factory):
    # pytest finds the initial conftest.py files on its first parse, before our options exist:
    # `--model /elsewhere/m.onnx` read as a path, and the project's conftest.py was not loaded.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(MODEL, elsewhere / "m.onnx")
    pytester.makeconftest("def pytest_report_header(config):\n    return 'the project conftest is loaded'\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", str(elsewhere / "m.onnx"), "--target", "ort", "-k", "accuracy")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["the project conftest is loaded"])


def test_a_conftest_may_load_the_plugin_itself(pytester, monkeypatch):
    # With plugin autoloading off, `pytest_plugins` in a conftest.py loads it: it then misses the hook
    # that adds the options after the conftest files, and adds them at once.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest("pytest_plugins = ['onnx2trt_check.pytest_plugin.plugin']\n")
    shutil.copy(MODEL, pytester.path / "m.onnx")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "-k", "accuracy")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["*target[[]ort[]]*PASSED*"])
