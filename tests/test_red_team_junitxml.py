"""Red team: pytest's --junitxml replaced the input model (or its weights, or the --inputs data)
with JUnit XML, exit 0: `pytest --model m.onnx --junitxml m.onnx`. Input files are never written;
the path is refused before the first item, in a plain run and under xdist."""

import hashlib

import bisect_models as bm
import numpy as np
import onnx
import pytest


def chain() -> onnx.ModelProto:
    model = bm.chain_model(2)
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(model.graph.output[0].name, onnx.TensorProto.FLOAT, [1, bm.CHANNELS, bm.SIZE, bm.SIZE]))
    return model


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model(pytester):
    path = pytester.path / "m.onnx"
    onnx.save(chain(), path)
    return path


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadfile"]])
def test_junitxml_never_replaces_the_model(pytester, model, xdist):
    before = digest(model)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort", f"--junitxml={model}", *xdist)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--junitxml '*m.onnx' is the input model; write the result to another path*"])
    assert digest(model) == before


def test_junitxml_never_replaces_a_model_of_a_folder_run(pytester, model):
    before = digest(model)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={pytester.path}", "--target=ort", "--junitxml=./m.onnx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and digest(model) == before


def test_junitxml_never_replaces_the_weights_of_the_model(pytester):
    path = pytester.path / "ext.onnx"
    onnx.save(chain(), path, save_as_external_data=True, all_tensors_to_one_file=True, location="ext.onnx.data", size_threshold=0)
    weights = pytester.path / "ext.onnx.data"
    before = digest(weights)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={path}", "--target=ort", f"--junitxml={weights}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*holds the input model's weights*"])
    assert digest(weights) == before


def test_junitxml_never_replaces_the_input_data(pytester, model):
    data = pytester.path / "in.npz"
    np.savez(data, x=np.stack([feed["x"] for feed in bm.feeds(2)]))
    before = digest(data)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort", f"--inputs={data}", f"--junitxml={data}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--junitxml '*in.npz' is the --inputs file; write the JUnit XML to another path*"])
    assert digest(data) == before


def test_junitxml_elsewhere_is_written(pytester, model):
    result = pytester.runpytest("-p", "no:cacheprovider", f"--model={model}", "--target=ort", "--junitxml=report.xml")
    assert result.ret == pytest.ExitCode.OK and (pytester.path / "report.xml").read_text().startswith("<?xml")
