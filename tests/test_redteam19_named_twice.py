"""Red team 19: a repeatable NAME:VALUE option that names one input or output twice with different
values kept the last without a word, as argparse did for plain options before red6:
`--output-tolerance logits:atol=1e-6,rtol=0 --output-tolerance logits:atol=1` passed an fp16 target
that the first line fails; `--input-range x:0,1 --input-range x:5,6` drew 5..6; the first
--input-shape of two was dropped. Each is now a usage error; the same value twice, and lines that
set different keys of one output, are taken."""

import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main
from onnx2trt_check.config import parse_output_tolerances
from onnx2trt_check.errors import ConfigError


@pytest.mark.parametrize(("args", "message"), [
    (["--output-tolerance", "logits:atol=1e-6,rtol=0", "--output-tolerance", "logits:atol=1"],
     "output tolerance 'logits:atol=1' sets atol of 'logits' again (1e-06 before); give it once"),
    (["--output-tolerance", "logits:atol=1e-6,atol=1"], "output tolerance 'logits:atol=1e-6,atol=1' sets a key twice; give each key once"),
    (["--input-range", "x:0,1", "--input-range", "x:5,6"], "--input-range gives 'x' twice ('x:0,1', then 'x:5,6'); give it once"),
    (["--input-range", "0,1", "--input-range", "5,6"], "--input-range gives every input twice ('0,1', then '5,6'); give it once"),
    (["--input-shape", "x:1x3x8x8", "--input-shape", "x:2x3x8x8"], "--input-shape gives 'x' twice ('x:1x3x8x8', then 'x:2x3x8x8'); give it once"),
])
def test_a_name_given_twice_with_other_values_is_a_usage_error(pytester, args, message):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort-fp16", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_the_same_value_twice_and_other_keys_of_one_output_are_taken():
    assert parse_output_tolerances(["logits:atol=1e-3", "logits:min_sqnr_db=30", "logits:atol=1e-3,atol=1e-3"]) == {
        "logits": {"atol": 1e-3, "min_sqnr_db": 30.0}}
    with pytest.raises(ConfigError):
        parse_output_tolerances(["logits:atol=1e-3", "logits:atol=1e-2"])


@pytest.mark.parametrize("args", [["optimize", "m.onnx", "-o", "o.onnx", "--input-shape", "x:1x3x8x8", "--input-shape", "x:2x3x8x8"],
                                  ["bisect", "m.onnx", "--target", "ort", "--input-range", "x:0,1", "--input-range", "x:5,6"]])
def test_the_commands_refuse_it_too(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    save(classifier(), tmp_path / "m.onnx")
    assert main(args) == 4
    assert "twice" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()
