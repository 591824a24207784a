"""Red team 5: options of generated inputs beside input data. `pytest --model m.onnx --inputs x.npz
--num-feeds 2` ran all 360 feeds of x.npz, `--input-range 0,255` left the data as it was and `--seed 3`
changed nothing, each with exit 0 and no word (the same in `optimize` and `bisect`): the run reported
a configuration the user did not get. Each is now a usage error naming the option (data.FeedOptions)."""

import numpy as np
import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(size=(6, 1, 3, 8, 8)).astype(np.float32))
    return save(classifier(), tmp_path / "m.onnx"), data


@pytest.mark.parametrize(("args", "named"), [(["--num-feeds", "2"], "--num-feeds"), (["--seed", "3"], "--seed"),
                                             (["--input-range", "0,255"], "--input-range"),
                                             (["--input-range", "x:0,2", "--seed", "1"], "--seed, --input-range")])
def test_pytest_refuses_generated_input_options_beside_input_data(pytester, files, args, named):
    model, data = files
    result = pytester.runpytest_inprocess("--model", str(model), "--inputs", str(data), "--target", "ort", *args)
    assert result.ret == 4
    assert f"{named} would change nothing with --inputs" in "\n".join(result.errlines)


def test_pytest_keeps_them_with_generated_inputs_and_the_data_alone(pytester, files):
    model, data = files
    assert pytester.runpytest_inprocess("--model", str(model), "--target", "ort", "--num-feeds", "2", "--seed", "3").ret == 0
    assert pytester.runpytest_inprocess("--model", str(model), "--inputs", str(data), "--target", "ort").ret == 0


@pytest.mark.parametrize("command", [["optimize", "-o", "out.onnx", "--num-feeds", "2"], ["bisect", "--target", "ort-fp16", "--input-range", "0,3"]])
def test_commands_refuse_them_too(files, capsys, tmp_path, monkeypatch, command):
    model, data = files
    monkeypatch.chdir(tmp_path)
    assert main([command[0], str(model), "--inputs", str(data), *command[1:]]) == 4
    err = capsys.readouterr().err
    assert "would change nothing with --inputs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()
