"""Red team: an output path that is a symlink loop (`ln -s b a; ln -s a b`) was a RuntimeError
traceback from Path.resolve() in every command writing a file (optimize/quantize -o, bisect --plot
and --json) and in pytest's --junitxml check; it is now one line naming the option, exit 4."""

import bisect_models as bm
import onnx
import pytest

from onnx2trt_check.cli.main import main


@pytest.fixture
def loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    model = bm.chain_model(2)
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(model.graph.output[0].name, onnx.TensorProto.FLOAT, [1, bm.CHANNELS, bm.SIZE, bm.SIZE]))
    onnx.save(model, tmp_path / "m.onnx")
    return str(tmp_path / "m.onnx"), str(tmp_path / "a")


@pytest.mark.parametrize(("args", "option"), [
    (["optimize", "{m}", "-o", "{a}"], "-o"),
    (["bisect", "{m}", "--target", "ort", "--plot", "{a}"], "--plot"),
    (["bisect", "{m}", "--target", "ort", "--json", "{a}"], "--json"),
])
def test_a_symlink_loop_as_output_is_one_line(loop, capsys, args, option):
    model, link = loop
    assert main([word.format(m=model, a=link) for word in args]) == 4
    err = capsys.readouterr().err
    assert f"{option} '{link}' cannot be resolved" in err and "Traceback" not in err


def test_pytest_junitxml_on_a_symlink_loop_is_a_usage_error(loop, pytester):
    model, link = loop
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort", f"--junitxml={link}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--junitxml '{link}' cannot be resolved*"])
