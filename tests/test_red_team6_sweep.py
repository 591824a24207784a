"""Red team 6, the sweep: values and files that ran with a configuration the user did not get, or
were refused with a message that misled.

* `optimize --passes simplify --passes optimize` ran only optimize (argparse keeps the last value
  of an option given twice, without a word); every one-value option of a command given twice with
  different values is now a usage error (cli/main.py). pytest's own last-wins stays: overriding
  the ini's addopts on the command line is how pytest is used.
* `api.optimize(passes=[])` ran every transform.
* `--labels labels.npz` said "holds no rows" (np.load opened the archive; left open), a folder
  "does not exist".
* `--model '*.onnx'` (quoted) said only "does not exist"."""

import numpy as np
import pytest
from tiny_models import classifier, save

import onnx2trt_check as o2t
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError
from onnx2trt_check.task_metrics import load_labels


@pytest.fixture
def model(tmp_path):
    return save(classifier(), tmp_path / "m.onnx")


@pytest.mark.parametrize("args", [["optimize", "-o", "o.onnx", "--passes", "simplify", "--passes", "optimize"],
                                  ["optimize", "-o", "a.onnx", "--output=b.onnx"],
                                  ["bisect", "--target", "ort", "--target=ort-fp16"],
                                  ["quantize", "-o", "q.onnx", "--calibration-data", "a.npz", "--calibration-data", "b.npz"]])
def test_a_command_option_given_twice_with_different_values_is_refused(model, tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    assert _exit_code(args[0], model, args[1:]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "given twice" in err
    assert [p.name for p in tmp_path.glob("*.onnx")] == ["m.onnx"]  # nothing written beside the model


def _exit_code(command, model, rest):
    with pytest.raises(SystemExit) as exited:
        main([command, str(model), *rest])
    return exited.value.code


def test_the_same_value_twice_and_repeatable_options_are_taken(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["optimize", str(model), "-o", "o.onnx", "--passes", "optimize", "--passes=optimize"]) == 0
    assert main(["bisect", str(model), "--target", "ort-fp16", "--fp16-block", "conv", "--fp16-block", "relu"]) in (0, 1)


@pytest.mark.parametrize("passes", [[], ()])
def test_api_optimize_with_no_pass_named_is_refused(model, passes):
    with pytest.raises(ConfigError, match="names no transform; leave it out"):
        o2t.optimize(model, passes=passes)


def test_labels_in_an_npz_archive_or_a_folder_are_named_so(tmp_path):
    np.savez(tmp_path / "labels.npz", labels=np.arange(4))
    with pytest.raises(ConfigError, match="is an .npz archive, not one array; --labels takes a .npy file"):
        load_labels(tmp_path / "labels.npz")
    with pytest.raises(ConfigError, match="is a folder"):
        load_labels(tmp_path)


def test_a_quoted_model_pattern_says_it_is_not_expanded(pytester, model):
    result = pytester.runpytest_inprocess("--model", str(model.parent / "*.onnx"), "--target", "ort")
    assert result.ret == 4
    assert "a pattern is not expanded here" in "\n".join(result.errlines)


# Options that shape something the run does not do were taken and changed nothing: `--latency-max-ratio 2`
# without --latency gated no latency, `--bisect-min-sqnr 10` without --bisect compared no layer,
# `--trt-builds 3` / `--engine-cache` / `--trt-flags` with --target ort built nothing, each with a green run.
@pytest.mark.parametrize(("args", "named"), [(["--latency-max-ratio", "2"], "--latency-max-ratio would change nothing without --latency"),
                                             (["--latency-rounds", "5", "--latency-warmup", "1"], "--latency-rounds, --latency-warmup would"),
                                             (["--bisect-min-sqnr", "10"], "--bisect-min-sqnr would change nothing without --bisect"),
                                             (["--bisect-feeds", "2"], "--bisect-feeds would change nothing without --bisect"),
                                             (["--trt-builds", "3"], "--trt-builds would change nothing: --target selects no trt-* target"),
                                             (["--engine-cache", "cache", "--trt-flags"], "--engine-cache, --trt-flags would change nothing")])
def test_options_of_what_the_run_does_not_do_are_refused(pytester, model, args, named):
    result = pytester.runpytest_inprocess("--model", str(model), "--target", "ort", *args)
    assert result.ret == 4
    assert named in "\n".join(result.errlines)


@pytest.mark.parametrize("args", [["--latency", "--latency-rounds", "3", "--latency-warmup", "0"], ["--bisect", "--bisect-feeds", "2"],
                                  ["--target", "trt-fp32", "--trt-builds", "2"]])
def test_they_are_taken_where_they_apply(pytester, model, args):
    assert pytester.runpytest_inprocess("--model", str(model), "--target", "ort", *args).ret == 0
