"""Red team 19: a symlink loop named *.json in the --baseline-dir folder (a stale link) made the
run's baseline summary a RuntimeError traceback (Path.resolve in find_unused) and the run exit 1
with every item passed. It is listed as an unused baseline file instead."""

import pytest
from tiny_models import classifier, save

from onnx2trt_check.baseline import find_unused


def test_find_unused_takes_a_symlink_loop(tmp_path):
    (tmp_path / "zz.json").symlink_to(tmp_path / "zz.json")
    (tmp_path / "used.json").write_text("{}")
    assert find_unused(tmp_path, [tmp_path / "used.json"]) == [tmp_path / "zz.json"]


def test_a_gate_run_over_such_a_folder_passes(pytester):
    save(classifier(batch=1), pytester.path / "m.onnx")
    args = ("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "--baseline-dir", "bl", "-k", "target or baseline")
    assert pytester.runpytest_subprocess(*args, "--baseline-update").ret == pytest.ExitCode.OK
    (pytester.path / "bl" / "zz.json").symlink_to("zz.json")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.OK and "Traceback" not in result.stdout.str() + result.stderr.str()
