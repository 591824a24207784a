"""Red team 19: a symlink loop (`ln -s b a; ln -s a b`) given to a path option of `pytest --model`.
--baseline-dir and --bisect-plot were an INTERNALERROR traceback (Path.resolve's RuntimeError),
--artifact-dir an ERROR item per artifact (FileExistsError), and --report-json replaced the link
with the report and exited 0. Each is now one line naming the option, exit 4, nothing written."""

import pytest
from tiny_models import classifier, save


@pytest.mark.parametrize("option", ["--baseline-dir", "--bisect-plot", "--artifact-dir", "--report-json"])
def test_a_symlink_loop_as_a_path_option_is_a_usage_error(pytester, option):
    save(classifier(), pytester.path / "m.onnx")
    out = pytester.mkdir("out")
    (out / "a").symlink_to(out / "b")
    (out / "b").symlink_to(out / "a")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", option, "out/a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option} 'out/a' cannot be resolved (Symlink loop from *); pass a path that is no symlink loop"])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()
    assert (out / "a").is_symlink() and sorted(p.name for p in out.iterdir()) == ["a", "b"]
