"""--reference-model with an original that takes inputs the derived model does not (a DistilBERT
student has no token_type_ids; its BERT teacher has; TorchScript drops inputs a model does not
read): those arrays of the data go to the original alone. Before, such a pair could not be checked:
data holding the input was refused as "not an input of the model", data without it matched
"neither by name nor by count"."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnx2trt_check import api
from onnx2trt_check.errors import CheckError

ROWS = np.random.default_rng(0).normal(size=(2, 2, 4)).astype(np.float32)  # [tables, rows, width]: words, then types


def _model(with_types: bool) -> onnx.ModelProto:
    """y = words[ids] + types[tt] (the teacher), or + types[0] (the student, which assumes tt = 0)."""
    inputs = "int64[N,S] ids, int64[N,S] tt" if with_types else "int64[N,S] ids"
    types = "t = Gather(types, tt)" if with_types else "zero = Constant<value = int64[1] {0}>()\n  t = Gather(types, zero)"
    model = onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["" : 17]>
g ({inputs}) => (float[N,S,4] y) {{
  w = Gather(words, ids)
  {types}
  y = Add(w, t)
}}""")
    words = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    model.graph.initializer.extend([numpy_helper.from_array(words, "words"), numpy_helper.from_array(ROWS[1], "types")])
    return model


@pytest.fixture
def pair(tmp_path):
    onnx.save(_model(True), tmp_path / "teacher.onnx")
    onnx.save(_model(False), tmp_path / "student.onnx")
    return tmp_path


def _parity(folder, data: dict | None, *more: str):
    args = [f"--reference-model={folder / 'teacher.onnx'}", "-k", "parity", "-p", "no:cacheprovider", "-q", *more]
    if data is not None:
        np.savez(folder / "data.npz", **data)
        args.append(f"--inputs={folder / 'data.npz'}")
    result = api.check(str(folder / "student.onnx"), pytest_args=args)
    model = next(iter(result.report["models"].values()))
    return model["families"]["derived"]["checks"]["parity"], model["notes"]


def test_the_original_alone_gets_the_input_the_derived_model_lacks(pair):
    ids = np.random.default_rng(2).integers(0, 50, size=(6, 2, 8))
    parity, notes = _parity(pair, {"ids": ids, "tt": np.zeros_like(ids)})
    assert parity["outcome"] == "passed", parity.get("message")
    assert "also agrees at smaller free dimensions" in parity["figures"]["summary"] and "also agrees at batch 1" in parity["figures"]["summary"]
    assert any("input(s) 'tt' of original model 'teacher.onnx' not in the model: fed to the original alone" in n for n in notes)
    parity, _ = _parity(pair, {"ids": ids, "tt": (ids % 2)})  # the teacher reads types the student assumed away
    assert parity["outcome"] == "failed"


def test_data_without_the_original_s_input_is_a_usage_error_naming_it(pair):
    with pytest.raises(CheckError, match="original model 'teacher.onnx' takes input 'tt', which the model does not: add it to --inputs"):
        _parity(pair, {"ids": np.zeros((4, 2, 8), np.int64)})


def test_generated_feeds_draw_the_original_s_input_too(pair):
    parity, _ = _parity(pair, None, "--input-shape=ids:2x8")  # tt drawn from 0..1 like every generated integer input: a 1 is a real difference
    assert parity["outcome"] == "failed" and "SQNR" in parity["message"]


def test_a_data_loader_s_feeds_give_the_original_its_input(pair):
    (pair / "loader.py").write_text(
        "import numpy as np\n"
        "def load_data():\n"
        "    rng = np.random.default_rng(3)\n"
        "    for _ in range(4):\n"
        "        ids = rng.integers(0, 50, size=(2, 8))\n"
        "        yield {'ids': ids, 'tt': np.zeros_like(ids)}\n")
    result = api.check(str(pair / "student.onnx"), pytest_args=[f"--reference-model={pair / 'teacher.onnx'}", f"--data-loader={pair / 'loader.py'}",
                                                                 "-k", "parity", "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == "passed" and "also agrees at smaller free dimensions" in parity["figures"]["summary"], parity


def test_calibration_data_may_hold_the_original_s_input_too(pair):
    """One file for --inputs and --calibration-data: the calibration feeds are the checked model's own
    inputs (the int8 model is the student's), so the teacher's array is left out, not refused as 'not
    an input of the model' (exit 4)."""
    ids = np.random.default_rng(2).integers(0, 50, size=(6, 2, 8))
    np.savez(pair / "calib.npz", ids=ids, tt=np.zeros_like(ids))
    parity, _ = _parity(pair, {"ids": ids, "tt": np.zeros_like(ids)}, f"--calibration-data={pair / 'calib.npz'}", "--target=ort-int8")
    assert parity["outcome"] == "passed", parity.get("message")
