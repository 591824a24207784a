"""Red team 19: pytest's --junitxml replaces its file at the end of the run, and it was checked
against the models and data files but not against the user's scripts: `--data-loader load.py
--junitxml load.py` (or --reference-script, --metric, FILE.py:func forms, a {model} template's file)
overwrote the script with the XML, exit 0. It is now a usage error, the script kept."""

import numpy as np
import pytest
from tiny_models import classifier, save

LOADER = "import numpy as np\ndef load_data():\n    for i in range(2):\n        yield {'x': np.random.default_rng(i).random((1, 3, 8, 8), dtype=np.float32)}\n"
REFERENCE = "import numpy as np\ndef reference(feed):\n    return {'logits': np.zeros((1, 10), np.float32)}\n"
METRIC = "def metric(outputs, labels):\n    return {'acc': 1.0}\n"


@pytest.mark.parametrize(("args", "victim", "flag"), [
    (["--data-loader", "load.py"], "load.py", "--data-loader"),
    (["--data-loader", "load.py:load_data"], "load.py", "--data-loader"),
    (["--data-loader", "{model}.py"], "m.py", "--data-loader"),
    (["--reference-script", "ref.py"], "ref.py", "--reference-script"),
    (["--inputs", "x.npz", "--metric", "met.py:metric"], "met.py", "--metric"),
])
def test_junitxml_never_replaces_a_script_of_the_run(pytester, args, victim, flag):
    save(classifier(batch=1), pytester.path / "m.onnx")
    for name, text in (("load.py", LOADER), ("m.py", LOADER), ("ref.py", REFERENCE), ("met.py", METRIC)):
        (pytester.path / name).write_text(text)
    np.savez(pytester.path / "x.npz", x=np.random.default_rng(0).random((2, 1, 3, 8, 8), dtype=np.float32))
    before = (pytester.path / victim).read_text()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", *args, "--junitxml", victim)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --junitxml '{victim}' is the {flag} file; write the JUnit XML to another path"])
    assert (pytester.path / victim).read_text() == before
