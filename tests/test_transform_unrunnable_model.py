"""A transform is verified against the model's own ONNX Runtime run. Where ONNX Runtime cannot run
the model (here a bfloat16 Relu, which its CPU provider does not implement), the transform items
reported FAILED "verification raised NotImplemented", blaming a correct fold; they now skip with
ORT's reason, as the targets do, and reference::run fails with the whole message."""

import json

import onnx
import onnx.parser

UNRUNNABLE = """<ir_version: 8, opset_import: ["": 17]>
g (float[1,2,4,4] x) => (float[1,2,4,4] y)
<float[2,2,1,1] w = {1.0, 0.5, 0.25, 2.0}, float[2] s = {1.5, 0.5}, float[2] b = {0.1, -0.2}, float[2] m = {0.0, 0.3}, float[2] v = {1.0, 2.0}> {
  c = Conv(x, w)
  n = BatchNormalization(c, s, b, m, v)
  h = Cast<to = 16>(n)
  r = Relu(h)
  y = Cast<to = 1>(r)
}"""


def test_transforms_of_a_model_onnx_runtime_cannot_run_skip_with_its_reason(pytester):
    onnx.save(onnx.parser.parse_model(UNRUNNABLE), str(pytester.path / "m.onnx"))
    result = pytester.runpytest_inprocess("--model", "m.onnx", "-k", "transform or reference", "--report-json", "r.json")
    families = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]
    assert families["reference"]["verdict"] == "failed"
    for name in ("transform[fold_conv_bn]", "transform[pipeline]"):
        check = families[name]["checks"]["equivalence"]
        assert check["outcome"] == "skipped", (name, check)
        assert check["message"].startswith("ONNX Runtime cannot run the model (NotImplemented: ")
        assert check["message"].endswith("so no transform can be verified against it")
    assert not [family for family, f in families.items() if family.startswith("transform") and f["verdict"] == "failed"]
    result.assert_outcomes(failed=1, skipped=len([f for f in families if f.startswith("transform")]))


def test_optimize_refuses_a_model_onnx_runtime_cannot_run_naming_why(tmp_path, capsys):
    # It printed "simplify FAILED: verification raised NotImplemented" (exit 1): a correct step blamed.
    from onnx2trt_check.cli.main import main

    onnx.save(onnx.parser.parse_model(UNRUNNABLE), str(tmp_path / "m.onnx"))
    assert main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx")]) == 4
    err = capsys.readouterr().err
    assert "ONNX Runtime cannot run '" in err and "(NotImplemented: " in err and "so nothing can be verified against it" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.onnx").exists()


BF16_CONSTANT = """<ir_version: 8, opset_import: ["": 17]>
g (float[1,4] x) => (float[1,4] z) {
  c = Constant<value = float[4] {1.0, 2.0, 3.0, 4.0}>()
  cb = Cast<to = 16>(c)
  cf = Cast<to = 1>(cb)
  z = Add(x, cf)
}"""


def test_onnxsims_constant_folding_warnings_are_one_line_each_not_a_traceback(tmp_path, capfd):
    # ONNX Runtime runs this model; onnxsim's folding of the bfloat16 Cast cannot fetch the result
    # and its C++ core printed the whole Python traceback on stderr, from a run that then passed.
    from onnx2trt_check.cli.main import main

    onnx.save(onnx.parser.parse_model(BF16_CONSTANT), str(tmp_path / "m.onnx"))
    assert main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx")]) == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err and '  File "' not in err
    assert 'onnxsim: WARNING: failed to run "Cast" op (name is ""), skip... (RuntimeError: No corresponding Numpy type' in err


def test_condensed_onnxsim_output_keeps_other_lines_and_drops_repeats():
    from onnx2trt_check.transforms.simplify import _condensed

    printed = ("WARNING: failed to run \"Cast\" op (name is \"\"), skip... Traceback (most recent call last):\n"
               "  File \"x.py\", line 1, in <module>\nRuntimeError: boom\nWARNING: failed to run \"Cast\" op (name is \"\"), skip... no initializer cb\n"
               "WARNING: failed to run \"Cast\" op (name is \"\"), skip... Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: boom\n"
               "something else onnxsim said\n")
    assert _condensed(printed) == ['onnxsim: WARNING: failed to run "Cast" op (name is ""), skip... (RuntimeError: boom)',
                                   'onnxsim: WARNING: failed to run "Cast" op (name is ""), skip... no initializer cb',
                                   "onnxsim: something else onnxsim said"]
