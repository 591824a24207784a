"""Review 7: defects found in the day's changes, each test shown failing without its fix.

* An option refused when its family is off (`--latency-rounds` without --latency, `--bisect-feeds`
  without --bisect, `--trt-builds` or `--fp16-block` with a --target that builds no such thing) was
  refused also when it came from the ini's addopts or PYTEST_ADDOPTS: a project default for the runs
  that turn the family on made every other run a usage error no command line could take back.
* Test data holding -inf was refused on every model: an additive attention mask (-inf on the masked
  keys, the form torch's generate_square_subsequent_mask gives) is legitimate, and a Softmax turns it
  to 0 on every engine alike. Infinities are taken now when the model's outputs on them are finite;
  NaN, and infinities that reach an output, are still refused.
* quantized_types left out a QuantizeLinear whose zero point is computed: its type is inferred now."""

import numpy as np
import onnx.parser
import pytest
from tiny_models import classifier, save

from onnx2trt_check.cli.main import main


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


MASKED_SOFTMAX = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2,4] x, float[2,4] mask) => (float[2,4] y) { s = Add(x, mask)  y = Softmax<axis=-1>(s) }"""


def _masked(tmp_path, masked_keys):
    onnx.save(onnx.parser.parse_model(MASKED_SOFTMAX), tmp_path / "att.onnx")
    x = np.random.default_rng(0).normal(size=(4, 2, 4)).astype(np.float32)
    mask = np.zeros((4, 2, 4), np.float32)
    mask[:, :, masked_keys] = -np.inf
    np.savez(tmp_path / "d.npz", x=x, mask=mask)
    return tmp_path / "att.onnx", tmp_path / "d.npz"


def test_an_attention_masks_minus_inf_is_taken(tmp_path, monkeypatch, pytester):
    model, data = _masked(tmp_path, [3])
    monkeypatch.chdir(tmp_path)
    assert main(["optimize", str(model), "--inputs", str(data), "-o", "out.onnx"]) == 0
    assert pytester.runpytest_inprocess("--model", str(model), "--inputs", str(data), "--target", "ort", "--target", "ort-fp16").ret == 0


def test_infinities_that_reach_an_output_are_still_refused(tmp_path, monkeypatch, capsys):
    model, data = _masked(tmp_path, [0, 1, 2, 3])  # every key masked: Softmax gives NaN
    monkeypatch.chdir(tmp_path)
    assert main(["optimize", str(model), "--inputs", str(data), "-o", "out.onnx"]) == 4
    assert "input 'mask' holds 32 NaN/inf value(s) in 4 feed(s)" in capsys.readouterr().err
    assert not (tmp_path / "out.onnx").exists()


def test_a_computed_zero_points_type_is_inferred():
    """A QuantizeLinear whose zero point is computed (here an Identity of a float8 constant) was left
    out of quantized_types, so a float8 model read as an int8 one under the int8 labels."""
    from onnx2trt_check.quant.float_counterpart import non_int8_types

    model = onnx.parser.parse_model("""<ir_version: 9, opset_import: ["" : 19]>
    g (float[4] x) => (float[4] y) {
      s = Constant<value = float {0.1}>()
      zp = Constant<value = float8e4m3fn {0}>()
      zero = Identity(zp)
      q = QuantizeLinear(x, s, zero)
      y = DequantizeLinear(q, s, zero)
    }""")
    assert non_int8_types(model) == ["FLOAT8E4M3FN"]
