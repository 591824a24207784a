"""hunt20: TensorRT has no float64. Its parser makes a DOUBLE graph output FLOAT, the engine built, and
trt::build passed with nothing said: a deployment that reads the output as the model declares it
(8 bytes per element) reads the engine's 4-byte floats wrong. The build item now names the output."""

import onnx
import onnx.parser
from tiny_models import save

from onnx2trt_check.trt.parse import parse_model, retyped_io

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1, 4] x) => (float[1, 4] y, double[1, 4] y64) {
    y = Relu(x)
    y64 = Cast<to = 11>(y)
}
"""


def test_a_double_output_the_engine_holds_as_float_is_named(tmp_path, rtx):
    model = onnx.parser.parse_model(MODEL)
    save(model, tmp_path / "m.onnx")
    result = parse_model(tmp_path / "m.onnx", rtx)
    assert result.ok
    assert retyped_io(result, model) == ["output 'y64' is DOUBLE in the model, FLOAT in the engine"]


def test_the_build_item_says_so(pytester, rtx):
    save(onnx.parser.parse_model(MODEL), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "-k", "trt", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*trt[[]fp32[]]*PASSED*layers; output 'y64' is DOUBLE in the model, FLOAT in the engine*"])
