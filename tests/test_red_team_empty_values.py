"""Red team: an empty text given for a path or value (`--inputs "$DATA"` with DATA unset) is a
usage error with one line, in every face.

Found as a new user: `pytest --model m.onnx --baseline-dir ''` (and --report-json, --inputs,
--data-loader, --reference-model, --fp16-calibration-data) ran with exit 0 as if the option were
left out: the regression gate, the report or the user's data silently dropped. `pytest --model ''`
and `onnx2trt-check check ''` checked every model of the current folder; `--metric ''` was an
INTERNALERROR; `bisect --json ''` wrote nothing with exit 0; the API took inputs="" as none and
output_dir="" as the current folder."""

import re

import bisect_models as bm
import numpy as np
import onnx
import pytest

import onnx2trt_check
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.onnx"
    chain = bm.chain_model(2)
    chain.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(chain.graph.output[0].name, onnx.TensorProto.FLOAT, [1, bm.CHANNELS, bm.SIZE, bm.SIZE]))
    onnx.save(chain, path)
    return str(path)


@pytest.mark.parametrize("option", ["--baseline-dir", "--report-json", "--inputs", "--data-loader", "--reference-model", "--metric",
                                    "--fp16-calibration-data", "--model"])
def test_pytest_refuses_an_empty_option(pytester, model, option):
    other = [] if option == "--model" else [f"--model={model}"]
    result = pytester.runpytest("-p", "no:cacheprovider", *other, "--target=ort-fp16", f"{option}=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*argument {option}: is empty; pass a value*"])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(("args", "message"), [
    (["check", ""], "argument model: is empty"),
    (["bisect", "{model}", "--target", "ort", "--json", ""], "argument --json: is empty"),
    (["bisect", "{model}", "--target", "ort-fp16", "--reduce", "-o", " "], "argument -o/--output: is empty"),
    (["optimize", "{model}", "-o", "o.onnx", "--inputs", ""], "argument --inputs: is empty"),
])
def test_the_cli_refuses_an_empty_value(model, capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:  # argparse's error, with this project's usage exit code
        main([word.format(model=model) for word in args])
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_the_cli_still_passes_a_command_its_words(model, capsys):
    assert main(["bisect", model, "--target", "ort"]) == 0  # the subcommand's own words are not read as empty


@pytest.mark.parametrize(("call", "message"), [
    (lambda m, t: onnx2trt_check.optimize(m, inputs=""), "--inputs is empty"),
    (lambda m, t: onnx2trt_check.bisect(m, target="ort", inputs=""), "--inputs is empty"),
    (lambda m, t: onnx2trt_check.bisect(m, target="ort-fp16", mode="reduce", output_dir=""), "-o is empty"),
    (lambda m, t: onnx2trt_check.bisect(m, target="ort", plot=""), "--plot is empty"),
    (lambda m, t: onnx2trt_check.quantize(m, calibration_data=t, inputs=t, metric=""), "--metric is empty"),
    (lambda m, t: onnx2trt_check.quantize(m, calibration_data=t, inputs=""), "--inputs is empty"),
    (lambda m, t: onnx2trt_check.optimize(m, output=""), "-o is empty"),
    (lambda m, t: onnx2trt_check.optimize(""), "the model path is empty; pass a path (is a variable unset?)"),
])
def test_the_api_refuses_an_empty_path(model, tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.stack([feed["x"] for feed in bm.feeds(5)]))
    with pytest.raises(ConfigError, match=re.escape(message)):
        call(model, str(data))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.onnx"]
