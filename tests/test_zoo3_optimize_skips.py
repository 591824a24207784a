"""Found on foreign models (zoo3): `optimize` printed the rewrites of a step that changed the
model but not the candidates it left alone, so a model with 4 BatchNormalizations read "fold_conv_bn
ok, 2 rewrite(s)" and kept 2 BNs with no word on why (a dynamo export with optimize=False, whose
bias-free Convs read a bias computed from the input's type). The printed step now lists what it
left and why, as it does for a step that changed nothing."""

from __future__ import annotations

import onnx
import onnx.parser

from onnx2trt_check.cli.main import main

# Two Conv -> BN pairs: the first folds; the second Conv's output is also a graph output, which
# forbids the fold (fold_conv_bn's own reason names it).
MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,2,5,5] x) => (float[1,2,5,5] y, float[1,2,5,5] c2) <
  float[2,2,1,1] w1 = {1, 0.5, -0.5, 2}, float[2,2,1,1] w2 = {0.3, -1, 1, 0.7},
  float[2] s = {1.5, -0.5}, float[2] b = {0.1, 0.2}, float[2] m = {0.3, -0.1}, float[2] v = {2, 0.5}> {
  c1 = Conv(x, w1)
  n1 = BatchNormalization(c1, s, b, m, v)
  r = Relu(n1)
  c2 = Conv(r, w2)
  y = BatchNormalization(c2, s, b, m, v)
}
"""


def test_a_step_that_changed_the_model_also_prints_what_it_left_and_why(tmp_path, capsys):
    path, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    model = onnx.parser.parse_model(MODEL)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    assert main(["optimize", str(path), "-o", str(out), "--passes", "fold_conv_bn"]) == 0
    printed = capsys.readouterr().out
    assert "fold_conv_bn              ok" in printed and "1 rewrite(s)" in printed
    assert "left alone" in printed and "Conv output 'c2' is a graph output" in printed
    assert sum(n.op_type == "BatchNormalization" for n in onnx.load(str(out)).graph.node) == 1


# BN -> padded Conv: the plain fold is wrong in the border band, which the pytest face reported
# and `optimize` did not (it printed only the element counts).
PADDED = """
<ir_version: 8, opset_import: ["": 17]>
g (float[1,2,5,5] x) => (float[1,2,5,5] y) <
  float[2,2,3,3] w = {1,0,1,0,1,0,1,0,1, 0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5, -1,0,1,-1,0,1,-1,0,1, 1,1,1,0,0,0,-1,-1,-1},
  float[2] s = {1.5, -0.5}, float[2] b = {2.0, 3.0}, float[2] m = {0.3, -0.1}, float[2] v = {2, 0.5}> {
  n = BatchNormalization(x, s, b, m, v)
  y = Conv<pads=[1,1,1,1]>(n, w)
}
"""


def test_a_failed_plain_fold_prints_its_border_error(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(PADDED), str(path))
    assert main(["optimize", str(path), "-o", str(tmp_path / "o.onnx"), "--passes", "fold_bn_conv", "--bn-conv-mode", "plain"]) == 1
    printed = capsys.readouterr().out
    assert "plain BN->Conv fold at 'y' (pads [1, 1, 1, 1])" in printed and "in the border band" in printed
