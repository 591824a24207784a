"""Red team 4: numeric option values (negative, zero, NaN, inf, 1e308, not a number) in every face.

Found:
* `[tool.onnx2trt_check] atol = true` ran with atol 1.0 and `min_cosine = false` with the cosine
  floor at 0 (a TOML boolean is a Python int): a typo loosened the verdict, exit 0;
* `--max-metric-drop inf` (pytest and bisect --sensitivity) was taken: the floor became -inf and
  `bisect --sensitivity` answered "nothing to keep in fp32"; `--max-metric-drop nan` was called
  "negative";
* `baseline_dir = ""` in [tool.onnx2trt_check] dropped the baseline gate silently, exit 0;
* a bad number for a CLI option (`--num-feeds nan`) printed the whole usage (up to 18 lines) above
  its error; `--threshold abc` suggested "e.g. 123.7,116.3,103.5" (the --mean example) and
  `--threshold 2` did not name the option.
"""

import numpy as np
import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main


@pytest.fixture
def model(pytester):
    save(classifier(batch=1), pytester.path / "m.onnx")
    return "m.onnx"


@pytest.mark.parametrize(("table", "message"), [
    ("atol = true", "atol = True is not a number"),
    ("min_cosine = false", "min_cosine = False is not a number"),
    ("[tool.onnx2trt_check.precision.fp16]\nmin_sqnr_db = true", "min_sqnr_db = True is not a number"),
    ("[tool.onnx2trt_check.outputs.logits]\nrtol = false", "rtol = False is not a number"),
])
def test_a_toml_boolean_is_no_tolerance(pytester, model, table, message):
    pytester.path.joinpath("pyproject.toml").write_text(f"[tool.onnx2trt_check]\n{table}\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort-fp16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_an_empty_baseline_dir_in_pyproject_is_refused(pytester, model):
    pytester.path.joinpath("pyproject.toml").write_text('[tool.onnx2trt_check]\nbaseline_dir = " "\n')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*baseline_dir = ' ' in ?tool.onnx2trt_check? is empty*"])


@pytest.mark.parametrize("drop", ["inf", "nan", "-1"])
def test_pytest_refuses_a_max_metric_drop_that_is_no_finite_drop(pytester, model, drop):
    np.save(pytester.path / "labels.npy", np.zeros(4, dtype=np.int64))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort", "--labels=labels.npy", f"--max-metric-drop={drop}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--max-metric-drop*e.g. --max-metric-drop 0.01*"])
    assert "is negative" not in result.stderr.str() or drop == "-1"


@pytest.mark.parametrize("drop", ["inf", "nan"])
def test_bisect_refuses_a_max_metric_drop_that_is_no_finite_drop(tmp_path, monkeypatch, capsys, drop):
    monkeypatch.chdir(tmp_path)
    save(classifier(batch=1), tmp_path / "m.onnx")
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(0).random((4, 1, 3, 8, 8), dtype=np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(4, dtype=np.int64))
    code = main(["bisect", "m.onnx", "--target", "ort-fp16", "--sensitivity", "--inputs", "in.npz", "--labels", "labels.npy", "--max-metric-drop", drop])
    assert code == 4
    assert f"--max-metric-drop {drop} is not finite" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["bisect", "m.onnx", "--target", "ort", "--num-feeds", "nan"], "argument --num-feeds: invalid int value: 'nan'"),
    (["quantize", "m.onnx", "-o", "q.onnx", "--calibration-data", "c.npz", "--percentile", "abc"], "argument --percentile: invalid float value: 'abc'"),
    (["optimize", "m.onnx", "-o", "o.onnx", "--seed", "1e3"], "argument --seed: invalid int value: '1e3'"),
])
def test_a_cli_value_that_is_no_number_is_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "--help" in err


@pytest.mark.parametrize(("threshold", "message"), [
    ("abc", "--threshold 'abc' is malformed; write a probability, e.g. --threshold 0.5 or --threshold scores:0.5"),
    ("2", "--threshold 2.0 is outside (0, 1)"),
])
def test_a_bad_threshold_names_the_option_and_its_form(tmp_path, monkeypatch, capsys, threshold, message):
    monkeypatch.chdir(tmp_path)
    save(classifier(batch=1), tmp_path / "m.onnx")
    assert main(["optimize", "m.onnx", "-o", "o.onnx", "--threshold", threshold]) == 4
    assert message in capsys.readouterr().err
