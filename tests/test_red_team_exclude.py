"""An --exclude pattern that names no node (a typo) left the node quantized and the run green: now a
usage error in `quantize` (before anything is written) and in `pytest --model` (before any item)."""

from pathlib import Path

import onnx
import pytest

from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import USAGE_ERROR_EXIT_CODE, ConfigError

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL, CALIB = MODELS / "convbn_classifier.onnx", MODELS / "convbn_classifier.calib.npz"


def test_quantize_refuses_an_exclude_that_matches_no_node(tmp_path, capsys):
    out = tmp_path / "q.onnx"
    code = main(["quantize", str(MODEL), "-o", str(out), "--calibration-data", str(CALIB), "--exclude", "nosuchnode"])
    assert code == USAGE_ERROR_EXIT_CODE and not out.exists()
    assert "--exclude 'nosuchnode' matches no node of the model" in capsys.readouterr().err


@pytest.mark.parametrize(("pattern", "names_a_node"), [
    ("/0/0.0/0.0.0/Conv", True), ("/1/.*/Conv", True), ("/0/0.0/0.0.0/conv", False), ("Conv", False), ("/0/.*/Gemm", False)])
def test_an_exclude_is_taken_when_it_names_a_node_in_full(pattern, names_a_node):
    from onnx2trt_check.quant.pipeline import check_exclude_matches

    model = onnx.load(MODEL)
    if names_a_node:
        check_exclude_matches(model, [pattern])
    else:
        with pytest.raises(ConfigError, match="matches no node"):
            check_exclude_matches(model, [pattern])


def test_an_unnamed_node_is_named_by_its_op_type_and_first_output():
    from onnx2trt_check.quant.pipeline import check_exclude_matches

    model = onnx.load(MODEL)
    first = model.graph.node[0]
    first.name = ""
    check_exclude_matches(model, [f"Conv({first.output[0]})"])
    with pytest.raises(ConfigError):
        check_exclude_matches(model, ["/0/0.0/0.0.0/Conv"])


def test_pytest_refuses_an_exclude_that_matches_no_node_before_any_item(pytester):
    result = pytester.runpytest_inprocess("--model", str(MODEL), "--calibration-data", str(CALIB), "--exclude", "nosuchnode", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--exclude 'nosuchnode' matches no node of the model*"])
