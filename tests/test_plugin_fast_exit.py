"""pytest_plugin/fast_exit.py: a `pytest --model` run freezes the heap of its imports (gc.freeze) so
the exit does not collect it; `-p no:onnx2trt_check_fast_exit` and the Python API do not."""

import subprocess
import sys

import pytest
from tiny_models import classifier, save

CHECKS = ("--target", "ort", "-k", "structure or reference or target")
# Printed at the end of the session: whether the run froze the heap, and that the run did not
# leave the garbage collector disabled.
CONFTEST = (
    "import gc\n"
    "def pytest_sessionfinish(session):\n"
    "    print(f'FROZEN:{gc.get_freeze_count() > 0} ENABLED:{gc.isenabled()}')\n"
)


@pytest.fixture
def model(pytester):
    pytester.makeconftest(CONFTEST)
    return save(classifier(), pytester.path / "m.onnx")


def test_a_model_run_freezes_the_heap_of_its_imports(pytester, model):
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "--model", str(model), *CHECKS)
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*FROZEN:True ENABLED:True*"])
    assert "leaked" not in result.stderr.str()  # nanobind's warning, were onnxsim's types frozen


def test_the_plugin_can_be_blocked(pytester, model):
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "-p", "no:onnx2trt_check_fast_exit", "--model", str(model), *CHECKS)
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*FROZEN:False*"])


def test_a_run_without_model_freezes_nothing(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*FROZEN:False*"])


def test_the_python_api_leaves_the_users_heap_alone(pytester, model):
    script = (
        "import gc, onnx2trt_check\n"
        f"outcome = onnx2trt_check.check({str(model)!r}, pytest_args={list(CHECKS)!r})\n"
        "print('PASSED', outcome.passed, 'FROZEN', gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=pytester.path, check=True)
    assert "PASSED True FROZEN False" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def test_nothing_is_frozen_once_onnxsim_is_imported(pytester, model):
    """Frozen, onnxsim's nanobind objects would never be freed and nanobind would print leak
    warnings at exit (they showed at the end of this suite's own run)."""
    pytester.makeconftest(CONFTEST + "from onnx2trt_check.transforms.simplify import import_onnxsim\nimport_onnxsim()\n")
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "--model", str(model), *CHECKS)
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*FROZEN:False*"])
    assert "leaked" not in result.stderr.str()
