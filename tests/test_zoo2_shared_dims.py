"""Second foreign-model pass, finding 5: two inputs declared with one dim name ([N, 4] and [N, 4]).
`--input-shape a:2x4` set N = 2 for 'a' while 'b' got its own default N = 1: feeds the model's
declaration forbids. ONNX Runtime broadcast them and passed, then cpu-fp16-emu ended in an error and
both TensorRT builds failed, blaming a valid model for shapes the tool made up. A dim name settled
for one input now sizes the same name in the others."""

import numpy as np
import onnx
import onnx.parser

from onnx2trt_check.model import resolve_input_specs

SHARED = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4] a, float[N,T] b) => (float[N,4] y) { y = Add(a, b) }"""


def test_a_dim_name_set_for_one_input_sizes_it_in_the_others():
    specs = {s.name: s.shape for s in resolve_input_specs(onnx.parser.parse_model(SHARED), {"a": (2, 4), "b": (2, 4)})}
    assert specs == {"a": (2, 4), "b": (2, 4)}
    specs = {
        s.name: s.shape for s in resolve_input_specs(onnx.parser.parse_model(SHARED.replace("float[N,T] b", "float[N,4] b")), {"a": (2, 4)})
    }
    assert specs == {"a": (2, 4), "b": (2, 4)}


def test_a_dim_name_settled_by_data_sizes_the_inputs_the_data_leaves_open():
    model = onnx.parser.parse_model(SHARED.replace("float[N,T] b", "float[N,4] b"))
    specs = {s.name: s.shape for s in resolve_input_specs(model, None, data_shapes={"a": (3, 4)})}
    assert specs == {"a": (3, 4), "b": (3, 4)}


def test_the_run_is_green_where_the_tool_made_up_shapes_before(tmp_path, capsys):
    import pytest

    onnx.save(onnx.parser.parse_model(SHARED.replace("float[N,T] b", "float[N,4] b")), tmp_path / "m.onnx")
    code = pytest.main([f"--model={tmp_path / 'm.onnx'}", "--input-shape=a:2x4", "-p", "no:cacheprovider", "-q", "-k", "target"])
    out = capsys.readouterr().out
    assert code == 0, out


def test_two_sizes_for_one_dim_name_are_refused_in_one_line(tmp_path, capsys):
    import pytest

    onnx.save(onnx.parser.parse_model(SHARED.replace("float[N,T] b", "float[N,4] b")), tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", a=np.ones((2, 2, 4), np.float32), b=np.ones((2, 3, 4), np.float32))
    code = pytest.main([f"--model={tmp_path / 'm.onnx'}", f"--inputs={tmp_path / 'd.npz'}", "-p", "no:cacheprovider", "-q"])
    captured = capsys.readouterr()
    assert code == 4, captured.out
    assert "inputs 'a' and 'b' get sizes 2 and 3 for dim 'N'" in captured.out + captured.err


def test_one_input_declaring_a_dim_name_twice_is_named_once():
    """redteam14: a square image input [N,3,S,S] fed 7x5 data said "inputs 'x' and 'x' get sizes 7 and 5"."""
    import pytest

    from onnx2trt_check.errors import ModelError

    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["": 17]>
    g (float[N,3,S,S] x) => (float[N,3,S,S] y) { y = Relu(x) }""")
    with pytest.raises(ModelError) as caught:
        resolve_input_specs(model, None, data_shapes={"x": (1, 3, 7, 5)})
    message = str(caught.value)
    assert "'x' and 'x'" not in message
    assert "input 'x' gets sizes 7 and 5 for dim 'S' (axes 2 and 3)" in message, message
