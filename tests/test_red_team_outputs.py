"""Red-team findings on output paths (fileio.checked_output): with --force, an output could be the
input model's external data file (optimize/quantize/qdq -o), or the input model itself (bisect --json,
--plot, --reduce -o into the model's folder when it is named model.onnx). Inputs are never written."""

import hashlib

import pytest
from tiny_models import classifier, save

from onnx2trt_check import api
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def external(tmp_path):
    import onnx

    model = classifier()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    return tmp_path / "m.onnx"


def test_optimize_never_writes_over_the_input_models_weights(external):
    before = _digest(external.parent)
    with pytest.raises(ConfigError, match="holds the input model's weights"):
        api.optimize(external, output=external.parent / "m.onnx.data", force=True)
    assert _digest(external.parent) == before


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bisect_never_writes_its_report_over_the_input(external, option, capsys):
    before = _digest(external.parent)
    for victim in ("m.onnx", "m.onnx.data"):
        code = main(["bisect", str(external), "--target", "ort-fp16", option, str(external.parent / victim), "--force"])
        assert code == 4 and "input model" in capsys.readouterr().err
    assert _digest(external.parent) == before


def test_bisect_reduce_never_writes_over_an_input_named_model_onnx(tmp_path):
    model = save(classifier(), tmp_path / "model.onnx")
    before = _digest(tmp_path)
    with pytest.raises(ConfigError, match="is the input model"):
        api.bisect(model, target="ort-fp16", mode="reduce", output_dir=tmp_path, force=True)
    assert _digest(tmp_path) == before
