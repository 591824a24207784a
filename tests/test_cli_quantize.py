"""`onnx2trt-check quantize`: writes a QDQ model atomically, prints the report and the accuracy."""

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx2trt_check.cli.main import main
from onnx2trt_check.quant.float_counterpart import has_qdq

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL = str(MODELS / "convbn_classifier.onnx")
CALIB = str(MODELS / "convbn_classifier.calib.npz")


def quantize(tmp_path, *args):
    return main(["quantize", MODEL, "-o", str(tmp_path / "q.onnx"), "--calibration-data", CALIB, "--method", "max", *args])


def test_writes_a_valid_qdq_model_and_prints_report_and_accuracy(tmp_path, capsys):
    assert quantize(tmp_path, "--inputs", str(MODELS / "convbn_classifier.npz")) == 0
    out = capsys.readouterr().out
    written = onnx.load(str(tmp_path / "q.onnx"))
    onnx.checker.check_model(written, full_check=True)
    assert has_qdq(written)
    # 4 Conv + 1 Gemm in the model (models/manifest.json)
    assert "quantized 5 activation(s) (max) and 5 weight(s)" in out
    assert "on 360 feed(s) of test inputs" in out and "logits: SQNR" in out and "top-1 agreement" in out
    assert not list(tmp_path.glob(".q.onnx.*"))  # no temporary file left behind


def test_without_test_inputs_it_measures_on_held_out_calibration_feeds(tmp_path, capsys):
    assert quantize(tmp_path, "--per-tensor", "--exclude", ".*Gemm") == 0
    out = capsys.readouterr().out
    # 128 calibration feeds: every 5th (25) judges, the other 103 calibrate
    assert "calibrated on 103 feed(s)" in out
    assert "int8 vs fp32 on 25 feed(s) of 25 held-out feed(s) of the calibration data" in out and "the quantizer calibrated on the other 103" in out
    assert "skipped /6/6.2/Gemm: excluded by '.*Gemm'" in out
    assert "4 weight(s)" in out and "per tensor" in out


def test_never_overwrites_without_force(tmp_path, capsys):
    (tmp_path / "q.onnx").write_bytes(b"keep")
    assert quantize(tmp_path) == 4
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "q.onnx").read_bytes() == b"keep"
    assert quantize(tmp_path, "--force") == 0
    assert has_qdq(onnx.load(str(tmp_path / "q.onnx")))


@pytest.mark.parametrize(
    "change, message",
    [
        ("wrong_key", "is not an input of the model"),
        ("missing", "does not exist"),
        ("percentile", "outside (0, 100]"),
        ("qdq_input", "already holds Q/DQ nodes"),
    ],
)
def test_misuse_is_exit_4_with_one_line(tmp_path, capsys, change, message):
    model, calib, extra = MODEL, CALIB, []
    if change == "wrong_key":
        calib = str(tmp_path / "bad.npz")
        np.savez(calib, images=np.zeros((2, 1, 1, 16, 16), np.float32))
    elif change == "missing":
        calib = str(tmp_path / "nowhere.npz")
    elif change == "percentile":
        extra = ["--percentile", "0"]
    else:
        model = str(tmp_path / "qdq.onnx")
        assert quantize(tmp_path) == 0
        shutil.copy(tmp_path / "q.onnx", model)
        capsys.readouterr()
    code = main(["quantize", model, "-o", str(tmp_path / "out.onnx"), "--calibration-data", calib, *extra])
    err = capsys.readouterr().err
    assert code == 4 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()


def test_calibration_method_is_the_option_and_method_its_alias(tmp_path, capsys):
    main(["quantize", MODEL, "-o", str(tmp_path / "a.onnx"), "--calibration-data", CALIB, "--calibration-method", "mse"])
    main(["quantize", MODEL, "-o", str(tmp_path / "b.onnx"), "--calibration-data", CALIB, "--method", "mse"])
    out = capsys.readouterr().out
    assert out.count("quantized 5 activation(s) (mse)") == 2
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_auto_is_the_default_and_reports_the_method_of_every_tensor(tmp_path, capsys):
    assert main(["quantize", MODEL, "-o", str(tmp_path / "q.onnx"), "--calibration-data", CALIB]) == 0
    out = capsys.readouterr().out
    assert "quantized 5 activation(s) (auto)" in out
    # 103 calibration feeds: every 4th is held out for the choice, at most 16; the other 87 fit the ranges
    assert "auto: ranges from 87 feed(s), chosen on 16 held-out calibration feed(s) by output SQNR" in out
    assert "of a budget of 32 full evaluations" in out and "not tried" not in out  # a small model: every tensor tried
    lines = [line for line in out.splitlines() if line.startswith("  activation ")]
    assert len(lines) == 5 and all(" by " in line and "output SQNR with: " in line for line in lines)


def outlier_model(tmp_path):
    """y = x @ W where x carries one huge constant element: its range swamps the int8 grid of the
    others, and no range method can resolve both (the others all fall in the histogram's first bin)."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 8)).astype(np.float32)
    weight[0] = 1e-4
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])], [onnx.numpy_helper.from_array(weight, "w")])
    model = tmp_path / "outlier.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(model))
    x = rng.uniform(0, 1, size=(40, 1, 64)).astype(np.float32)
    x[:, :, 0] = 1e4
    np.savez(tmp_path / "calib.npz", x=x)
    return str(model), str(tmp_path / "calib.npz")


def test_below_the_int8_floor_nothing_is_written_and_the_worst_tensors_and_a_bisect_command_are_named(tmp_path, capsys):
    model, calib = outlier_model(tmp_path)
    out_path = tmp_path / "q.onnx"
    assert main(["quantize", model, "-o", str(out_path), "--calibration-data", calib]) == 1
    out = capsys.readouterr().out
    assert not out_path.exists() and not list(tmp_path.glob(".q.onnx*"))
    assert "BELOW the int8 floor" in out and "worst tensors (layerwise, int8 vs fp32):" in out
    assert "  y at mm: SQNR 0.0 dB" in out
    command = next(line for line in out.splitlines() if line.startswith("explain it: ")).removeprefix("explain it: ")
    assert command == shlex.join(["onnx2trt-check", "bisect", model, "--target", "ort-int8", "--calibration-data", calib, "--calibration-method", "auto"])
    # The command explains it: the same artifact on the same held-out feeds, the same verdict, the node named.
    assert main(shlex.split(command)[1:]) == 1
    explained = capsys.readouterr().out
    assert "ort-int8 (onnxruntime) on 8 feed(s) (8 held-out feed(s) of the calibration data" in explained
    # The root cause: the input's int8 grid, set by its one 1e4 element, rounds every other element to 0.
    assert "first divergent: node mm, tensor 'x_dequantized' (reference 'x'): SQNR 66.98 dB" in explained
    assert "SQNR of the elements of a typical scale -5.60 dB below the floor 20.0 dB (1 element(s) far from the rest left out" in explained
    # --accept-degraded writes it, and says so.
    assert main(["quantize", model, "-o", str(out_path), "--calibration-data", calib, "--accept-degraded"]) == 0
    assert "WARNING: wrote" in capsys.readouterr().out and has_qdq(onnx.load(str(out_path)))


def test_the_ort_int8_item_holds_the_same_floor_on_the_same_feeds(pytester):
    model, calib = outlier_model(pytester.path)
    import onnx2trt_check

    refused = onnx2trt_check.quantize(model, calibration_data=calib)
    result = pytester.runpytest_inprocess("--model", model, "--calibration-data", calib, "--target", "ort-int8", "--report-json", "r.json")
    result.assert_outcomes(failed=1, passed=8, skipped=12)  # skips: items that do not apply here
    result.stdout.fnmatch_lines(["*note: ort-int8: no --inputs, so the int8 model is judged on a held-out fifth of the calibration data*"])
    report = json.loads((pytester.path / "r.json").read_text())
    accuracy = next(iter(report["models"].values()))["families"]["target[ort-int8]"]["checks"]["accuracy"]
    assert not refused.passed and accuracy["outcome"] == "failed"
    item, command = accuracy["figures"]["outputs"]["y"], refused.accuracy["y"]
    assert item["sqnr_db"] == pytest.approx(command["sqnr_db"]) and "8 held-out feed(s)" in accuracy["figures"]["inputs"]



def _item_and_command(pytester, model, calib, *options):
    """The ort-int8 item's outcome and the quantize command's exit code, both run in the same folder
    with the same floor options (--calibration-method max, the item's own judging feeds)."""
    result = pytester.runpytest_inprocess("--model", model, "--calibration-data", calib, "--calibration-method", "max",
                                          "--target", "ort-int8", "--report-json", "r.json", *options)
    report = json.loads((pytester.path / "r.json").read_text())
    accuracy = next(iter(report["models"].values()))["families"]["target[ort-int8]"]["checks"]["accuracy"]
    code = main(["quantize", model, "-o", str(pytester.path / "q.onnx"), "--calibration-data", calib, "--calibration-method", "max", "--force", *options])
    assert result.ret in (0, 1)
    return accuracy["outcome"], code


TIGHTER = {  # the int8 floor raised above the 31-35 dB convbn_classifier reaches
    "pyproject int8 table": ("pyproject.toml", "[tool.onnx2trt_check.precision.int8]\nmin_sqnr_db = 60\n", ()),
    "pytest.ini": ("pytest.ini", "[pytest]\nonnx2trt_min_sqnr_db = 60\n", ()),
    "command line": (None, "", ("--min-sqnr", "60")),
}
LOOSER = {  # the outlier model's 0 dB accepted for its output y
    "pyproject output table": ("pyproject.toml", "[tool.onnx2trt_check.outputs.y]\nmin_sqnr_db = -1\nmin_cosine = 0\nmin_top1 = 0\n", ()),
    "tox.ini": ("tox.ini", "[pytest]\nonnx2trt_output_tolerances =\n    y:min_sqnr_db=-1,min_cosine=0,min_top1=0\n", ()),
    "command line": (None, "", ("--output-tolerance", "y:min_sqnr_db=-1,min_cosine=0,min_top1=0")),
}


@pytest.mark.parametrize("where", TIGHTER)
def test_a_project_that_tightens_the_int8_floor_gets_the_same_refusal_from_pytest_and_quantize(pytester, where):
    """Run in the project folder, which holds the model (pytest finds its rootdir from the model's
    folder as well as from the current one)."""
    file, text, options = TIGHTER[where]
    model, calib = (str(shutil.copy(path, pytester.path)) for path in (MODEL, CALIB))
    assert _item_and_command(pytester, model, calib) == ("passed", 0)
    if file:
        pytester.path.joinpath(file).write_text(text)
    assert _item_and_command(pytester, model, calib, *options) == ("failed", 1)


@pytest.mark.parametrize("where", LOOSER)
def test_a_project_that_loosens_the_int8_floor_gets_the_same_pass_from_pytest_and_quantize(pytester, where, capsys):
    model, calib = outlier_model(pytester.path)
    file, text, options = LOOSER[where]
    assert _item_and_command(pytester, model, calib) == ("failed", 1)
    if file:
        pytester.path.joinpath(file).write_text(text)
    capsys.readouterr()
    assert _item_and_command(pytester, model, calib, *options) == ("passed", 0)
    assert "(floor: SQNR >= -1 dB, cosine >= 0, top-1 >= 0%; CANNOT FAIL: the tolerances in force pass an all-zero" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["pyproject int8 table", "pytest.ini"])
def test_bisect_judges_the_int8_artifact_by_the_projects_floor(pytester, where, capsys):
    """The bisect command's verdict (its exit code) is the ort-int8 item's, project floor included."""
    file, text, _ = TIGHTER[where]
    model, calib = (str(shutil.copy(path, pytester.path)) for path in (MODEL, CALIB))
    command = ["bisect", model, "--target", "ort-int8", "--calibration-data", calib, "--calibration-method", "max", "--inputs", str(MODELS / "convbn_classifier.npz")]
    assert main(command) == 0
    pytester.path.joinpath(file).write_text(text)
    capsys.readouterr()
    assert main(command) == 1
    assert "SQNR 36.44 dB below the floor 60.0 dB" in capsys.readouterr().out


def test_the_api_reads_the_floor_of_the_project_folder_it_is_given(tmp_path):
    from onnx2trt_check.api import quantize as api_quantize

    strict, plain = tmp_path / "strict", tmp_path / "plain"
    strict.mkdir(), plain.mkdir()
    (strict / "pyproject.toml").write_text(TIGHTER["pyproject int8 table"][1])
    assert api_quantize(MODEL, calibration_data=CALIB, calibration_method="max", project=plain).passed
    refused = api_quantize(MODEL, calibration_data=CALIB, calibration_method="max", project=strict, output=strict / "q.onnx")
    assert not refused.passed and refused.written is None and not (strict / "q.onnx").exists()


def test_an_output_tolerance_for_an_output_the_model_lacks_is_a_usage_error(tmp_path, capsys):
    assert quantize(tmp_path, "--output-tolerance", "logit:min_sqnr_db=30") == 4
    assert "--output-tolerance names 'logit', which the model does not have; outputs: logits" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()
