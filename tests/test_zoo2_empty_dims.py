"""Second foreign-model pass, finding 4: the first step of a KV-cache decoder (past length 0) could
not be checked at all. `--input-shape past_kv:1x2x0x4` was "malformed", and an .npz holding two
feeds of an empty past ([2, 1, 2, 0, 4]) was refused as "holds no samples" (it holds two). A size 0
is now data after the leading (batch) dim; a batch of 0 is still refused, since every output would
be empty and their comparison would pass while comparing nothing."""

import numpy as np
import onnx
import onnx.parser
import pytest

KV = """
<ir_version: 8, opset_import: ["": 17]>
g (float[batch,2,past,4] past_kv, float[batch,2,1,4] new_kv) => (float[batch,2,total,4] present, float[batch,2,1,4] attn) {
  present = Concat<axis=2>(past_kv, new_kv)
  t = Transpose<perm=[0,1,3,2]>(present)
  s = MatMul(new_kv, t)
  p = Softmax<axis=-1>(s)
  attn = MatMul(p, present)
}"""


@pytest.fixture
def kv_model(tmp_path):
    onnx.save(onnx.parser.parse_model(KV), tmp_path / "kv.onnx")
    return tmp_path / "kv.onnx"


def _run(tmp_path, *args):
    return pytest.main(
        [f"--model={tmp_path / 'kv.onnx'}", "-p", "no:cacheprovider", "-q", "--target", "ort", "-k", "target or reference", *args]
    )


def test_an_empty_past_given_by_input_shape_is_checked(kv_model, tmp_path, capsys):
    code = _run(tmp_path, "--input-shape", "past_kv:1x2x0x4", "--input-shape", "new_kv:1x2x1x4")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 passed" in out


def test_an_empty_past_given_by_data_is_checked(kv_model, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", past_kv=np.zeros((2, 1, 2, 0, 4), np.float32), new_kv=np.ones((2, 1, 2, 1, 4), np.float32))
    code = _run(tmp_path, f"--inputs={tmp_path / 'd.npz'}")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 feed(s)" in out


def test_a_batch_of_zero_is_refused_in_one_line(kv_model, tmp_path, capsys):
    code = _run(tmp_path, "--input-shape", "past_kv:0x2x3x4", "--input-shape", "new_kv:0x2x1x4")
    captured = capsys.readouterr()
    assert code == 4
    assert "a batch of 0 compares nothing" in captured.out + captured.err


def test_the_api_takes_an_empty_past(kv_model, tmp_path):
    import onnx2trt_check

    result = onnx2trt_check.optimize(str(kv_model), input_shapes={"past_kv": (1, 2, 0, 4), "new_kv": (1, 2, 1, 4)})
    assert result.passed
