"""Review 7: defects found in the day's changes, each test shown failing without its fix.

* An option refused when its family is off (`--latency-rounds` without --latency, `--bisect-feeds`
  without --bisect, `--trt-builds` or `--fp16-block` with a --target that builds no such thing) was
  refused also when it came from the ini's addopts or PYTEST_ADDOPTS: a project default for the runs
  that turn the family on made every other run a usage error no command line could take back."""

import pytest
from tiny_models import classifier, save


@pytest.fixture
def model(tmp_path):
    return save(classifier(), tmp_path / "m.onnx")


@pytest.mark.parametrize(("defaults", "args"), [("--latency-rounds 5 --latency-max-ratio 2", []), ("--bisect-feeds 2 --bisect-min-sqnr 10", []),
                                                ("--trt-builds 3 --engine-cache cache", ["--target", "ort"]),
                                                ("--fp16-block conv", ["--target", "ort"])])
def test_idle_options_from_addopts_are_defaults_not_refusals(pytester, model, monkeypatch, defaults, args):
    pytester.makeini(f"[pytest]\naddopts = {defaults}\n")
    assert pytester.runpytest_inprocess("--model", str(model), *args).ret == 0
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", defaults)
    assert pytester.runpytest_inprocess("--model", str(model), *args).ret == 0


def test_typed_on_the_command_line_they_are_still_refused(pytester, model):
    pytester.makeini("[pytest]\naddopts = --latency-rounds 5\n")
    result = pytester.runpytest_inprocess("--model", str(model), "--bisect-feeds=2")
    assert result.ret == 4
    assert "--bisect-feeds would change nothing" in "\n".join(result.errlines)


def test_under_xdist_the_controller_tells_typed_from_addopts(pytester, model):
    """xdist workers see no command line (their invocation args are the controller's file args): the
    controller, which reads the options too, is the one that refuses."""
    pytester.makeini("[pytest]\naddopts = --latency-rounds 5\n")
    assert pytester.runpytest_subprocess("--model", str(model), "-n", "2", "--target", "ort").ret == 0
    assert pytester.runpytest_subprocess("--model", str(model), "-n", "2", "--target", "ort", "--trt-builds", "2").ret == 4
