"""hunt20: torch's exporter stores equal initializers once and reads the copies through Identity
nodes (two BatchNorms with zero biases: `bn2.bias = Identity(bn.bias)`). fold_bn_conv then skipped
the pair with "BatchNormalization scale/bias/mean/var are not all constants", which they are. BN
parameters and Conv weights are now read through such an Identity, and the Identity, read by nobody
after the fold, goes with the pair."""

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper

from onnx2trt_check.runtime import run_model
from onnx2trt_check.transforms.fold_bn_conv import fold_bn_conv
from onnx2trt_check.transforms.fold_conv_bn import fold_conv_bn

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4, 6, 6] x) => (float[1, 4, 6, 6] y) {
    b2 = Identity(b)
    w2 = Identity(w)
    c = Conv(x, w)
    n = BatchNormalization(c, g, b, m, v)
    r = Relu(n)
    n2 = BatchNormalization(r, g2, b2, m2, v2)
    y = Conv(n2, w2)
}
"""


def model() -> onnx.ModelProto:
    proto = onnx.parser.parse_model(TEXT)
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(4, 4, 1, 1)), "g": rng.uniform(0.5, 1.5, 4), "b": np.zeros(4), "m": rng.normal(size=4),
              "v": rng.uniform(0.5, 2, 4), "g2": rng.uniform(0.5, 1.5, 4), "m2": rng.normal(size=4), "v2": rng.uniform(0.5, 2, 4)}
    proto.graph.initializer.extend(numpy_helper.from_array(a.astype(np.float32), k) for k, a in arrays.items())
    onnx.checker.check_model(proto, full_check=True)
    return proto


def test_bn_params_and_conv_weights_behind_an_identity_fold_exactly_and_the_identity_goes():
    original = model()
    feeds = [{"x": np.random.default_rng(i).normal(size=(1, 4, 6, 6)).astype(np.float32)} for i in range(3)]
    first = fold_conv_bn(original)
    second = fold_bn_conv(first.model)
    assert first.modified and second.modified, (first.report, second.report)
    ops = [node.op_type for node in second.model.graph.node]
    assert ops == ["Conv", "Relu", "Conv"], ops
    for expected, got in zip(run_model(original, feeds), run_model(second.model, feeds)):
        np.testing.assert_allclose(got["y"], expected["y"], rtol=1e-5, atol=1e-5)
