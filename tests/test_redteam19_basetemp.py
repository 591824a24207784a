"""Red team 19: pytest empties a --basetemp folder when a run starts (xdist's controller in every -n
run): `pytest --model models/m.onnx --basetemp models -n 2` deleted the model and its data and said
"no tests ran". A --basetemp that holds a model, an input file or a place the run keeps (baselines,
artifacts, report) is now a usage error, and the files stay."""

import numpy as np
import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize(("args", "what"), [
    (["--model", "models/m.onnx", "--basetemp", "models", "-n", "2"], "the model"),
    (["--model", "m.onnx", "--inputs", "models/x.npz", "--basetemp", "models"], "the --inputs path"),
    (["--model", "m.onnx", "--baseline-dir", "models/baselines", "--basetemp", "models"], "the --baseline-dir path"),
])
def test_a_basetemp_holding_the_runs_files_is_refused(pytester, args, what):
    folder = pytester.mkdir("models")
    save(classifier(batch=1), folder / "m.onnx")
    save(classifier(batch=1), pytester.path / "m.onnx")
    np.savez(folder / "x.npz", x=np.random.default_rng(0).random((2, 1, 3, 8, 8), dtype=np.float32))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--target", "ort", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --basetemp 'models' holds {what} *, and pytest empties the --basetemp folder when a run starts; "
                                 "pass a folder of its own, or leave --basetemp out*"])
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx", "x.npz"]


def test_a_basetemp_of_its_own_is_taken(pytester):
    save(classifier(batch=1), pytester.path / "m.onnx")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "-k", "target",
                                           "--basetemp", str(pytester.path / "bt"), "-n", "2")
    result.assert_outcomes(passed=1)
