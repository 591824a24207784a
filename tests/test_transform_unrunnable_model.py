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
