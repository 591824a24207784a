"""Red team 4: an output path that is one of the run's input data files, or the path of another
output of the same run.

Found as a new user, with --force (which only means "replace my earlier result"):
`optimize m.onnx -o in.npz --inputs in.npz`, `quantize -o calib.npz --calibration-data calib.npz`,
`qdq optimize -o in.npz --inputs in.npz` and `bisect --json calib.npz` replaced the user's data
with a model or a report, exit 0. Without --force: `bisect --json x.json --plot x.json` wrote the
JSON over the plot; `bisect --reduce -o . --json model.onnx` wrote it over the reduced model;
`pytest --model m.onnx --report-json r.json --junitxml r.json` kept only one of the two. Each is
now one line, exit 4, before any work, and nothing in the folder changes."""

import hashlib

import numpy as np
import pytest
from tiny_models import classifier, save

from onnx2trt_check import api
from onnx2trt_check.cli.main import main
from onnx2trt_check.errors import ConfigError


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save(classifier(batch=1), tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.random((10, 1, 3, 8, 8), dtype=np.float32))
    np.savez(tmp_path / "in.npz", x=rng.random((2, 1, 3, 8, 8), dtype=np.float32))
    return tmp_path


@pytest.fixture
def qdq_model(folder):
    api.quantize("m.onnx", calibration_data="calib.npz", output="q.onnx")
    return "q.onnx"


@pytest.mark.parametrize(("args", "message"), [
    (["optimize", "m.onnx", "-o", "in.npz", "--inputs", "in.npz", "--force"], "-o 'in.npz' is the --inputs file"),
    (["quantize", "m.onnx", "-o", "calib.npz", "--calibration-data", "calib.npz", "--force"], "-o 'calib.npz' is the --calibration-data file"),
    (["quantize", "m.onnx", "-o", "./in.npz", "--calibration-data", "calib.npz", "--inputs", "in.npz", "--force"], "-o './in.npz' is the --inputs file"),
    (["bisect", "m.onnx", "--target", "ort-fp16", "--inputs", "in.npz", "--json", "in.npz", "--force"], "--json 'in.npz' is the --inputs file"),
    (["bisect", "m.onnx", "--target", "ort-fp16", "--inputs", "in.npz", "--plot", "in.npz", "--force"], "--plot 'in.npz' is the --inputs file"),
    (["bisect", "m.onnx", "--target", "ort-int8", "--calibration-data", "calib.npz", "--json", "calib.npz", "--force"],
     "--json 'calib.npz' is the --calibration-data file"),
    (["bisect", "m.onnx", "--target", "ort-fp16", "--json", "x.json", "--plot", "x.json"], "--plot 'x.json' is also the --json path"),
    (["bisect", "m.onnx", "--target", "ort-fp16", "--reduce", "-o", ".", "--json", "model.onnx", "--min-sqnr", "200"],
     "is also the --json path"),
    (["bisect", "m.onnx", "--target", "ort-fp16", "--reduce", "-o", "red", "--json", "red/inputs.npz", "--min-sqnr", "200"],
     "is also the --json path"),
])
def test_an_output_is_never_an_input_file_or_another_output(folder, capsys, args, message):
    before = _digest(folder)
    assert main(args) == 4
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert _digest(folder) == before and not (folder / "red").exists()


def test_qdq_optimize_never_writes_over_its_inputs(qdq_model, folder, capsys):
    before = _digest(folder)
    assert main(["qdq", "optimize", qdq_model, "-o", "in.npz", "--inputs", "in.npz", "--force"]) == 4
    assert "-o 'in.npz' is the --inputs file" in capsys.readouterr().err
    assert _digest(folder) == before


def test_the_api_refuses_an_output_over_its_data(folder):
    before = _digest(folder)
    with pytest.raises(ConfigError, match="is the --inputs file"):
        api.optimize("m.onnx", output="in.npz", inputs="in.npz", force=True)
    with pytest.raises(ConfigError, match="is the --inputs file"):
        api.bisect("m.onnx", target="ort-fp16", inputs="in.npz", plot="in.npz", force=True)
    assert _digest(folder) == before


def test_a_data_loader_script_is_an_input_too(folder, capsys):
    (folder / "load.py").write_text("import numpy as np\ndef load_data():\n    yield {'x': np.zeros((1, 3, 8, 8), np.float32)}\n")
    before = _digest(folder)
    assert main(["bisect", "m.onnx", "--target", "ort-int8", "--calibration-data", "load.py:load_data", "--json", "load.py", "--force"]) == 4
    assert "--json 'load.py' is the --calibration-data file" in capsys.readouterr().err
    assert _digest(folder) == before


def test_distinct_outputs_are_still_written(folder, capsys):
    assert main(["bisect", "m.onnx", "--target", "ort-fp16", "--inputs", "in.npz", "--json", "b.json", "--plot", "b.html"]) == 0
    assert (folder / "b.json").is_file() and (folder / "b.html").is_file()


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadfile"]])
def test_pytest_report_json_and_junitxml_need_two_paths(pytester, xdist):
    save(classifier(batch=1), pytester.path / "m.onnx")
    result = pytester.runpytest("-p", "no:cacheprovider", "--model=m.onnx", "--target=ort", "--report-json=r.xml", "--junitxml=./r.xml", *xdist)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--junitxml './r.xml' is also the --report-json path; give each its own path*"])
    assert not (pytester.path / "r.xml").exists()
