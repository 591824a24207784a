"""Files that are not binary ONNX, whatever their name: onnx.load picks a format by extension, but
ONNX Runtime and TensorRT's parser read binary protobuf only. A text-format model (.onnxtxt) loaded
and then failed in ORT and TensorRT as 'INVALID_PROTOBUF' (3 items FAILED on a valid model); a .json
that is not JSON raised an INTERNALERROR; a binary model named .json could not be read."""

import subprocess
import sys

import onnx
import pytest

from onnx2trt_check.errors import ModelError
from onnx2trt_check.model import load_model
from onnx2trt_check.protos import read_onnx

TINY = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[1,4] x) => (float[1,4] y) { y = Relu(x) }""")


def test_a_text_format_model_is_refused_with_the_conversion(tmp_path):
    path = tmp_path / "m.onnxtxt"
    path.write_text(onnx.printer.to_text(TINY))
    with pytest.raises(ModelError, match=r"is an ONNX model in a text format.*onnx.save\(onnx.load\("):
        load_model(path)


def test_a_json_file_that_is_no_model_is_a_model_error(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("graph { node { op_type: 'Relu' } }")
    with pytest.raises(ModelError, match="is not a valid ONNX model"):
        load_model(path)


def test_a_binary_model_is_read_whatever_its_extension(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(TINY.SerializeToString())
    assert load_model(path).proto.graph.node[0].op_type == "Relu"
    assert read_onnx(path).graph.node[0].op_type == "Relu"


def test_pytest_refuses_a_text_format_model_with_exit_4(tmp_path):
    path = tmp_path / "m.onnxtxt"
    path.write_text(onnx.printer.to_text(TINY))
    run = subprocess.run([sys.executable, "-m", "pytest", f"--model={path}", "-q", "-p", "no:cacheprovider"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 4, run.stdout + run.stderr
    assert "is an ONNX model in a text format" in run.stdout + run.stderr and "INTERNALERROR" not in run.stdout + run.stderr
