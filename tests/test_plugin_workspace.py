"""A `pytest --model` run, `onnx2trt-check check` and `onnx2trt_check.check` leave nothing in the
working folder, beside the models or in the temporary folder unless asked (issue 13, point 11);
pytest's cache, which `--lf` reads, lives in the user's cache folder (pytest_plugin/workspace.py)."""

import sys
import tempfile
from pathlib import Path

import pytest
from tiny_models import classifier, save

import onnx2trt_check
from onnx2trt_check.pytest_plugin.workspace import pytest_cache_folder

# ort-fp16 and cpu-fp16-emu write derived models (the fp16 artifact and its emulation).
CHECKS = ("--target", "ort", "--target", "ort-fp16", "--target", "cpu-fp16-emu", "-k", "structure or reference or target")


@pytest.fixture
def folders(pytester, monkeypatch, tmp_path_factory):
    """The models' folder, the working folder (a sibling), and a private temporary folder."""
    models, work = pytester.mkdir("models"), pytester.mkdir("work")
    save(classifier(), models / "m.onnx")
    temporary = tmp_path_factory.mktemp("private-tmp")
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.delenv("PYTEST_DEBUG_TEMPROOT", raising=False)  # pytester's: pytest-of-<user> would go there, unseen
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.chdir(work)
    return models, work, temporary


def _listing(*folders) -> set:
    """Every path below the folders, but `.ses`: onnxruntime's native library writes that one file
    (51 bytes, a time stamp and a session uuid) into the temporary folder whenever it is imported."""
    return {path for folder in folders for path in folder.rglob("*") if path.name != ".ses"}


@pytest.mark.parametrize("how", ["pytest", "pytest -n 2", "onnx2trt-check check", "onnx2trt_check.check"])
def test_a_run_leaves_no_file_behind(pytester, folders, how):
    before = _listing(*folders)
    if how == "onnx2trt_check.check":
        outcome = onnx2trt_check.check("../models/m.onnx", pytest_args=list(CHECKS))
        assert outcome.passed and outcome.report["counts"]["passed"] == 10
    elif how == "onnx2trt-check check":
        result = pytester.run(sys.executable, "-m", "onnx2trt_check.cli", "check", "../models/m.onnx", *CHECKS)
        assert result.ret == 0, result.stdout.str()
    else:  # as a user runs it: runpytest_subprocess would add a --basetemp of its own
        result = pytester.run(sys.executable, "-m", "pytest", "--model", "../models/m.onnx", *CHECKS, *(["-n", "2"] if "-n" in how else []))
        result.assert_outcomes(passed=10)
    assert _listing(*folders) == before


def test_artifact_dir_keeps_the_derived_models(pytester, folders):
    models, work, _ = folders
    pytester.runpytest_subprocess("--model", "../models/m.onnx", *CHECKS, "--artifact-dir", "kept").assert_outcomes(passed=10)
    kept = sorted(p.name for p in (work / "kept").rglob("*.onnx"))
    assert kept == ["m.fp16-emu.onnx", "m.fp16.onnx"]


def test_the_cache_for_last_failed_is_in_the_user_cache_folder(pytester, folders, monkeypatch, tmp_path):
    models, work, _ = folders
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    strict = ("--model", "../models/m.onnx", *CHECKS, "--min-sqnr=200")  # every target fails
    first = pytester.runpytest_subprocess(*strict)
    first.assert_outcomes(passed=7, failed=3)
    rootdir = next(line.split(": ", 1)[1] for line in first.outlines if line.startswith("rootdir: "))
    folder = pytest_cache_folder(Path(rootdir))
    assert folder.parent.parent.parent == tmp_path / "cache" and (folder / "v" / "cache" / "lastfailed").is_file()
    pytester.runpytest_subprocess(*strict, "--lf").assert_outcomes(failed=3)


def test_a_configured_cache_dir_is_kept(pytester, folders):
    _, work, _ = folders
    (work / "pytest.ini").write_text("[pytest]\ncache_dir = my_cache\n")
    pytester.runpytest_subprocess("--model=../models/m.onnx", *CHECKS).assert_outcomes(passed=10)
    assert (work / "my_cache").is_dir()
