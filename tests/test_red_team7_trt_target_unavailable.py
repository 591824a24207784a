"""Red team 7: `--target trt-fp16` (any trt-* target named) where no TensorRT imports skipped every
item of the target and exited 0: a CI gate that asked for a TensorRT engine and checked none was
green. It is now a usage error up front (exit 4) naming the target and the install command, in
`pytest --model` with and without xdist and in `onnx2trt-check check`. TensorRT-RTX is hidden
from the run by a sitecustomize, not uninstalled."""

import os
import subprocess
import sys

import pytest
from tiny_models import classifier, save

HIDE_TENSORRT = """
import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorrt_rtx", "tensorrt"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
"""


@pytest.fixture
def no_tensorrt(tmp_path, monkeypatch):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_TENSORRT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("ONNX2TRT_CHECK_TRT", raising=False)
    return hide


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadfile"]])
def test_an_explicit_trt_target_without_tensorrt_is_a_usage_error(pytester, no_tensorrt, workers):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_subprocess("--model", "m.onnx", "--target", "ort", "--target", "trt-fp16", "-p", "no:cacheprovider", *workers)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: --target trt-fp16: no TensorRT is installed (pip install*; install TensorRT or drop the target"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_without_an_explicit_trt_target_the_run_goes_on(pytester, no_tensorrt):
    save(classifier(), pytester.path / "m.onnx")
    result = pytester.runpytest_subprocess("--model", "m.onnx", "--target", "ort", "-k", "accuracy", "-p", "no:cacheprovider")
    assert result.ret == 0


def test_the_check_command_refuses_it_too(tmp_path, no_tensorrt):
    model = save(classifier(), tmp_path / "m.onnx")
    done = subprocess.run([sys.executable, "-m", "onnx2trt_check.cli", "check", str(model), "--target", "trt-fp32"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "--target trt-fp32: no TensorRT is installed" in done.stderr
