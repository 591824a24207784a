"""Every bad or out-of-scope input, through every face: one line naming the problem, exit code 4
(a CheckError for the API), no traceback, no INTERNALERROR, and nothing written anywhere.

The fixture set (bad_input_files.py) holds the models, data files and loaders; the table below
runs each through `pytest --model`, a command of `onnx2trt-check`, or a function of the API.
Placeholders: {d} the fixture folder, {w} an empty folder a case may name as an output (it must
stay empty), {ro} a folder no file can be created in.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import pytest
from bad_input_files import build

import onnx2trt_check
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import CheckError

GOOD = "{d}/good.onnx"
PYTEST = [
    # out-of-scope models
    (["--model", "{d}/sklearn_zipmap.onnx"], "output 'probabilities' is a sequence of maps"),
    (["--model", "{d}/ml_only.onnx"], "ai.onnx.ml operators (Normalizer)"),
    (["--model", "{d}/random_noise.onnx"], "it draws random values (RandomNormalLike(n)): every run, and every engine, draws its own"),
    (["--model", "{d}/train_dropout.onnx"], "it draws random values (Dropout(y) in training mode)"),
    (["--model", "{d}/sequence_input.onnx"], "input 's' is a sequence"),
    (["--model", "{d}/sequence_output.onnx"], "output 's' is a sequence"),
    (["--model", "{d}/optional_output.onnx"], "output 'y' is an optional value"),
    (["--model", "{d}/string_io.onnx"], "input 's' is a STRING tensor"),
    (["--model", "{d}/bfloat16_io.onnx"], "input 'x' is a BFLOAT16 tensor"),
    (["--model", "{d}/ir99.onnx"], "IR version 99 is newer than the installed onnx"),
    (["--model", "{d}/untyped_input.onnx"], "input 'x' declares no type"),
    # broken model files
    (["--model", "{d}/not_onnx.onnx"], "is not a valid ONNX model"),
    (["--model", "{d}/truncated.onnx"], "is not a valid ONNX model"),
    (["--model", "{d}/empty_file.onnx"], "parsed as an empty ONNX model"),
    (["--model", "{d}/folder.onnx"], "holds no .onnx file"),
    (["--model", "{d}/missing.onnx"], "does not exist; check the --model path"),
    (["--model", "{d}/ext_missing/model.onnx"], "which is missing next to the model"),
    (["--model", "{d}/ext_absolute/model.onnx"], "not a path relative to the model"),
    (["--model", "{d}/ext_outside/model.onnx"], "outside the model's folder"),
    (["--model", "{d}/ext_symlink/model.onnx"], "a symbolic link"),
    (["--model", "{d}/ext_short/model.onnx"], "shorter than declared"),
    (["--model", "{d}/dynamic_hw.onnx"], "has dynamic dim 'H'"),
    # input data
    (["--model", GOOD, "--inputs", "{d}/empty_batch.npz"], "array 'x' has shape [0, 3, 8, 8], which holds no samples"),
    (["--model", GOOD, "--inputs", "{d}/empty_stack.npz"], "which holds no samples"),
    (["--model", GOOD, "--inputs", "{d}/no_arrays.npz"], "holds no arrays"),
    (["--model", GOOD, "--inputs", "{d}/wrong_name.npz"], "has array 'y', which is not an input of the model"),
    (["--model", GOOD, "--inputs", "{d}/wrong_shape.npz"], "array 'x' has shape [1, 3, 4, 4], but the input is [1, 3, 8, 8]"),
    (["--model", GOOD, "--inputs", "{d}/complex.npz"], "convert it before saving"),
    (["--model", GOOD, "--inputs", "{d}/objects.npz"], "holds Python objects (dtype object), which are pickled and never loaded"),
    (["--model", GOOD, "--inputs", "{d}/single_npy.npz"], "is a single .npy array, not an .npz archive"),
    (["--model", GOOD, "--inputs", "{d}/junk.npz"], "is not an .npz archive (not a zip file)"),
    (["--model", GOOD, "--inputs", "{d}/npz_folder.npz"], "is a folder; pass an .npz file"),
    (["--model", GOOD, "--inputs", "{d}/missing.npz"], "does not exist; check the --inputs path"),
    (["--model", GOOD, "--inputs", "{d}/huge_header.npz"], "declares shape [1000000, 1000000] (4000000000000 bytes) but holds 16 bytes"),
    (["--model", GOOD, "--inputs", "{d}/ok.npz", "--data-loader", "{d}/loader_raises.py"], "choose one source of input data"),
    # data loaders
    (["--model", GOOD, "--data-loader", "{d}/loader_raises.py"], "raised ValueError when called: the dataset is not mounted"),
    (["--model", GOOD, "--data-loader", "{d}/loader_returns_none.py"], "returned None; make it return a list of dicts"),
    (["--model", GOOD, "--data-loader", "{d}/loader_exits.py"], "called sys.exit(3) when called"),
    (["--model", GOOD, "--data-loader", "{d}/loader_exits_on_import.py"], "failed to import: SystemExit: 2"),
    (["--model", GOOD, "--data-loader", "{d}/loader_fails_midway.py"], "raised OSError while yielding feed #1: disk read error"),
    (["--model", GOOD, "--data-loader", "{d}/loader_yields_lists.py"], "yielded a list at #0; yield dicts"),
    (["--model", GOOD, "--data-loader", "{d}/loader_yields_objects.py"], "is a object array, not numbers"),
    (["--model", GOOD, "--data-loader", "{d}/loader_yields_empty.py"], "which holds no samples"),
    (["--model", GOOD, "--data-loader", "{d}/loader_returns_dict.py"], "returned a dict; make it return a list of dicts"),
    (["--model", GOOD, "--data-loader", "{d}/loader_returns_int.py"], "returned a int, which is not iterable"),
    (["--model", GOOD, "--data-loader", "{d}/loader_no_function.py"], "has no function 'load_data'"),
    (["--model", GOOD, "--data-loader", "{d}/loader_yields_nothing.py"], "yielded no feeds"),
    (["--model", GOOD, "--data-loader", "{d}/loader_wrong_shape.py"], "feed #0: 'x' has shape [1, 3, 4, 4], the input is [1, 3, 8, 8]"),
    (["--model", GOOD, "--data-loader", "{d}/missing.py"], "data loader script '{d}/missing.py' does not exist"),
    # option values
    (["--model", GOOD, "--seed", "-1"], "--seed -1 is not a seed numpy takes"),
    (["--model", GOOD, "--num-feeds", "0"], "--num-feeds 0 must be at least 1"),
    (["--model", GOOD, "--num-feeds", "100000000"], "exceed the 2 GiB limit on input data"),
    (["--model", GOOD, "--atol", "nan"], "atol = nan must be a finite, non-negative number"),
    (["--model", GOOD, "--atol", "inf"], "atol = inf must be a finite, non-negative number"),
    (["--model", GOOD, "--rtol", "-1"], "rtol = -1.0 must be a finite, non-negative number"),
    (["--model", GOOD, "--min-cosine", "2"], "min_cosine = 2.0 is above 1"),
    (["--model", GOOD, "--min-sqnr", "nan"], "min_sqnr_db = nan must be a finite number"),
    (["--model", GOOD, "--input-range", "0,inf"], "--input-range '0,inf' is malformed"),
    (["--model", GOOD, "--input-range", "x:1,0"], "--input-range 'x:1,0' is malformed"),
    (["--model", GOOD, "--input-shape", "x:0x3x8x8"], "input 'x' would have shape [0, 3, 8, 8]: a batch of 0 compares nothing"),
    (["--model", GOOD, "--input-shape", "q:1x2"], "--input-shape names 'q', which is not an input of the model"),
    (["--model", GOOD, "--mean", "0.5", "--std", "0"], "--std 0 has a zero"),
    (["--model", GOOD, "--std", "nan"], "pass finite numbers"),
    (["--model", GOOD, "--threshold", "1.5"], "1.5"),
    (["--model", GOOD, "--percentile", "0"], "--percentile 0.0 is outside (0, 100]"),
    (["--model", GOOD, "--percentile", "nan"], "--percentile nan is outside (0, 100]"),
    (["--model", GOOD, "--bisect-feeds", "0"], "--bisect-feeds 0 must be at least 1"),
    (["--model", GOOD, "--bisect-min-sqnr", "nan"], "--bisect-min-sqnr nan is not finite"),
    (["--model", GOOD, "--trt-builds", "1"], "--trt-builds 1 gives no spread"),
    (["--model", GOOD, "--trt-builds", "0"], "--trt-builds 0 gives no spread"),
    (["--model", GOOD, "--latency-rounds", "0"], "--latency-rounds 0"),
    (["--model", GOOD, "--calibration-sweep"], "--calibration-sweep needs calibration data"),
    (["--model", GOOD, "--calibration-data", "{d}/missing.npz"], "check the --calibration-data path"),
    (["--model", GOOD, "--calibration-data", "{d}/empty_batch.npz"], "--calibration-data '{d}/empty_batch.npz': array 'x'"),
    (["--model", GOOD, "--calibration-data", "{d}/wrong_name.npz"], "--calibration-data '{d}/wrong_name.npz' has array 'y'"),
    (["--model", GOOD, "--fp16-calibration-data", "{d}/objects.npz"], "--fp16-calibration-data '{d}/objects.npz': array 'x' holds Python objects"),
    (["--model", GOOD, "--target", "bogus"], "unknown target 'bogus'"),
    (["--model", GOOD, "--transform", "bogus"], "bogus"),
    (["--model", GOOD, "--bn-conv-mode", "bogus"], "--bn-conv-mode 'bogus' is unknown"),
    (["--model", GOOD, "--output-tolerance", "logits:fast=1"], "unknown tolerance 'fast'"),
    # output paths
    (["--model", GOOD, "--report-json", "{d}"], "--report-json '{d}' is a folder"),
    (["--model", GOOD, "--report-json", "{d}/socket.out"], "--report-json '{d}/socket.out' is not a regular file"),
    (["--model", GOOD, "--report-json", "{ro}/report.json"], "cannot create files in '{ro}'"),
    (["--model", GOOD, "--report-json", "{d}/good.onnx/report.json"], "which is a file; choose another path"),
    (["--model", GOOD, "--report-json", "{d}/ok.npz"], "exists and is not an onnx2trt_check report"),
    (["--model", GOOD, "--artifact-dir", "{d}/good.onnx"], "--artifact-dir '{d}/good.onnx' is a file; pass a folder"),
    (["--model", GOOD, "--artifact-dir", "{ro}/artifacts"], "cannot create files in '{ro}'"),
    (["--model", GOOD, "--baseline-dir", "{d}/good.onnx"], "--baseline-dir '{d}/good.onnx' is a file"),
    (["--model", GOOD, "--baseline-dir", "{ro}/baselines", "--baseline-update"], "cannot create files in '{ro}'"),
    (["--model", GOOD, "--bisect-plot", "{d}/good.onnx"], "--bisect-plot '{d}/good.onnx' is a file"),
    (["--model", GOOD, "--engine-cache", "{d}/good.onnx"], "--engine-cache '{d}/good.onnx' is a file"),
]

CLI = [
    (["ops", "{d}/sklearn_zipmap.onnx"], "is a sequence of maps"),
    (["ops", "{d}/ir99.onnx"], "IR version 99"),
    (["ops", "{d}/ext_outside/model.onnx"], "outside the model's folder"),
    (["check", "{d}/sequence_output.onnx"], "output 's' is a sequence"),
    (["optimize", "{d}/random_noise.onnx", "-o", "{w}/out.onnx"], "it draws random values (RandomNormalLike(n))"),
    (["check", "{d}/train_dropout.onnx"], "export the model in eval mode"),
    (["check", GOOD, "--seed", "-1"], "--seed -1"),
    (["optimize", GOOD, "-o", "{d}"], "-o '{d}' is a folder; pass a file path"),
    (["optimize", GOOD, "-o", "{ro}/out.onnx"], "cannot create files in '{ro}'"),
    (["optimize", GOOD, "-o", "{d}/socket.out", "--force"], "-o '{d}/socket.out' is not a regular file"),
    (["optimize", GOOD, "-o", "{d}/ok.npz"], "-o '{d}/ok.npz' already exists; pass --force"),
    (["optimize", GOOD, "-o", GOOD, "--force"], "is the input model"),
    (["optimize", GOOD, "-o", "{d}/good.onnx/out.onnx"], "which is a file"),
    (["optimize", "{d}/sklearn_zipmap.onnx", "-o", "{w}/out.onnx"], "sequence of maps"),
    (["optimize", GOOD, "-o", "{w}/out.onnx", "--seed", "-1"], "--seed -1"),
    (["optimize", GOOD, "-o", "{w}/out.onnx", "--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    (["optimize", GOOD, "-o", "{w}/out.onnx", "--num-feeds", "0"], "--num-feeds 0 must be at least 1"),
    (["optimize", GOOD, "-o", "{w}/out.onnx", "--inputs", "{d}/empty_batch.npz"], "holds no samples"),
    (["optimize", GOOD, "-o", "{w}/out.onnx", "--mean", "0.5", "--std", "0"], "--std 0 has a zero"),
    (["optimize", "{d}/dynamic_hw.onnx", "-o", "{w}/out.onnx"], "has dynamic dim 'H'"),
    (["quantize", GOOD, "-o", "{w}/q.onnx", "--calibration-data", "{d}/missing.npz"], "check the --calibration-data path"),
    (["quantize", GOOD, "-o", "{w}/q.onnx", "--calibration-data", "{d}/loader_raises.py"], "raised ValueError when called"),
    (["quantize", GOOD, "-o", "{w}/q.onnx", "--calibration-data", "{d}/ok.npz", "--inputs", "{d}/objects.npz"], "--inputs '{d}/objects.npz'"),
    (["quantize", GOOD, "-o", "{w}/q.onnx", "--calibration-data", "{d}/ok.npz", "--percentile", "nan"], "--percentile nan"),
    (["quantize", "{d}/ml_only.onnx", "-o", "{w}/q.onnx", "--calibration-data", "{d}/ok.npz"], "ai.onnx.ml operators"),
    (["quantize", GOOD, "-o", "{d}", "--calibration-data", "{d}/ok.npz"], "is a folder"),
    (["bisect", GOOD, "--target", "ort", "--reduce", "-o", "{d}/ok.npz"], "-o '{d}/ok.npz' is a file; pass a folder"),
    (["bisect", GOOD, "--target", "ort", "--json", "{d}"], "--json '{d}' is a folder"),
    (["bisect", GOOD, "--target", "ort", "--plot", "{ro}/plot.html"], "cannot create files in '{ro}'"),
    (["bisect", GOOD, "--target", "ort", "--max-feeds", "0"], "--max-feeds 0 must be at least 1"),
    (["bisect", GOOD, "--target", "ort", "--min-sqnr", "nan"], "--min-sqnr nan is not finite"),
    (["bisect", GOOD, "--target", "ort", "--atol", "-1"], "--atol -1.0 must be at least 0"),
    (["bisect", GOOD, "--target", "ort-int8", "--calibration-data", "{d}/missing.npz"], "check the --calibration-data path"),
    (["bisect", "{d}/sequence_input.onnx", "--target", "ort"], "input 's' is a sequence"),
    (["bisect", GOOD, "--target", "ort", "--inputs", "{d}/huge_header.npz"], "declares shape [1000000, 1000000]"),
    (["bisect", GOOD, "--target", "ort", "--seed", "-1"], "--seed -1"),
    (["quantize", GOOD, "-o", "{w}/q.onnx", "--calibration-data", "{d}/empty_stack.npz"], "--calibration-data '{d}/empty_stack.npz': array 'x'"),
    (["bisect", GOOD, "--target", "ort", "--inputs", "{d}/empty_batch.npz"], "which holds no samples"),
    (["qdq", "optimize", "{d}/qdq.onnx", "-o", "{w}/out.onnx", "--inputs", "{d}/empty_batch.npz"], "which holds no samples"),
    (["qdq", "optimize", "{d}/qdq.onnx", "-o", "{w}/out.onnx", "--seed", "-1"], "--seed -1"),
    (["qdq", "check", "{d}/ir99.onnx"], "IR version 99"),
    (["qdq", "optimize", GOOD, "-o", "{d}"], "is a folder"),
    (["qdq", "optimize", GOOD, "-o", "{w}/out.onnx"], "holds no Q/DQ nodes"),
    (["qdq", "optimize", "{d}/ext_short/model.onnx", "-o", "{w}/out.onnx"], "shorter than declared"),
]


def _api_cases(d: str):
    return [
        (lambda: onnx2trt_check.check(f"{d}/sequence_output.onnx"), "output 's' is a sequence"),
        (lambda: onnx2trt_check.check(f"{d}/good.onnx", pytest_args=["--seed", "-1"]), "--seed -1"),
        (lambda: onnx2trt_check.check([]), "got no model"),
        (lambda: onnx2trt_check.optimize(f"{d}/good.onnx", output=d), "is a folder"),
        (lambda: onnx2trt_check.optimize(onnx.load(f"{d}/sklearn_zipmap.onnx")), "'<ModelProto>' is outside"),
        (lambda: onnx2trt_check.optimize(f"{d}/good.onnx", input_shapes={"x": (-1, 3)}), "is not a list of integers >= 0"),
        (lambda: onnx2trt_check.optimize(f"{d}/good.onnx", inputs=f"{d}/loader_exits.py"), "called sys.exit(3)"),
        (lambda: onnx2trt_check.quantize(f"{d}/good.onnx", calibration_data=f"{d}/missing.npz"), "check the --calibration-data path"),
        (lambda: onnx2trt_check.quantize(f"{d}/good.onnx", calibration_data=f"{d}/ok.npz", calibration_method="bogus"), "--calibration-method 'bogus'"),
        (lambda: onnx2trt_check.bisect(f"{d}/good.onnx", target="ort", mode="reduce", output_dir=f"{d}/ok.npz"), "is a file"),
        (lambda: onnx2trt_check.bisect(f"{d}/good.onnx", target="ort", num_feeds=0), "--num-feeds 0"),
        (lambda: onnx2trt_check.bisect(f"{d}/ir99.onnx", target="ort"), "IR version 99"),
    ]


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def unwritable(tmp_path_factory) -> Path:
    """A folder in which no file can be created: mode 0555, or (root ignores modes) sysfs."""
    folder = tmp_path_factory.mktemp("readonly")
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys/fs")):
        try:
            handle, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(handle)
        os.unlink(probe)
    pytest.fail("no unwritable folder on this machine for the read-only cases")


@pytest.fixture
def scene(fixture_set, unwritable, tmp_path, monkeypatch):
    """The case's folders, a private temporary folder and the working folder, all watched."""
    scratch, temp, cwd = tmp_path / "w", tmp_path / "temp", tmp_path / "cwd"
    for folder in (scratch, temp, cwd):
        folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(cwd)
    places = {"d": str(fixture_set), "w": str(scratch), "ro": str(unwritable)}
    before = _listing(fixture_set)
    yield places
    assert _listing(fixture_set) == before, "a file was written into the fixture folder"
    for folder in (scratch, temp, cwd):
        assert not list(folder.iterdir()), f"files were left in {folder}: {sorted(p.name for p in folder.iterdir())}"


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def _fill(items, places) -> list[str]:
    return [item.format(**places) for item in items]


def _assert_one_line(text: str, expected: str, marker: str) -> None:
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    errors = [line for line in text.splitlines() if marker in line]
    assert len(errors) == 1, text
    assert expected in errors[0], f"expected {expected!r} in {errors[0]!r}"


@pytest.mark.parametrize("args, expected", PYTEST, ids=[f"pytest-{i}" for i in range(len(PYTEST))])
def test_pytest_refuses_bad_input_in_one_line(scene, capsys, args, expected):
    code = pytest.main([*_fill(args, scene), "-p", "no:cacheprovider", "-q", "-p", "no:randomly"])
    out, err = capsys.readouterr()
    assert code == 4, out + err
    _assert_one_line(out + err, expected.format(**scene), "ERROR:")


@pytest.mark.parametrize("args, expected", CLI, ids=[f"cli-{i}-{a[0]}" for i, (a, _) in enumerate(CLI)])
def test_every_command_refuses_bad_input_in_one_line(scene, capsys, args, expected):
    try:
        code = main(_fill(args, scene))
    except SystemExit as exc:  # argparse's own usage errors (exit code 4 by cli.main's parser)
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 4, out + err
    marker = "ERROR:" if args[0] == "check" else "error:"
    _assert_one_line(out + err, expected.format(**scene), marker)


@pytest.mark.parametrize("index", range(12), ids=[f"api-{i}" for i in range(12)])
def test_the_api_raises_a_check_error(scene, capsys, index):
    call, expected = _api_cases(scene["d"])[index]
    with pytest.raises(CheckError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and expected.format(**scene) in message, message
    assert "Traceback" not in "".join(capsys.readouterr())


def test_the_fixture_set_is_large_enough():
    assert len(PYTEST) + len(CLI) + 12 >= 60
