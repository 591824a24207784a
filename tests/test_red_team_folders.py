"""A --model folder as a new user fills it: a dangling link ended the whole run with pytest's unclear
"not found", `M.ONNX` and a model given as `m.pb` were not checked, models in subfolders were left
out without a word."""

import os

from tiny_models import classifier, save

LIGHT = ("--target", "ort", "-k", "structure or reference or target", "-p", "no:cacheprovider")


def test_a_dangling_link_in_the_folder_is_a_usage_error_naming_it(pytester):
    (pytester.path / "zoo").mkdir()
    save(classifier(), pytester.path / "zoo" / "a.onnx")
    os.symlink(pytester.path / "gone.onnx", pytester.path / "zoo" / "b.onnx")
    result = pytester.runpytest_inprocess("--model", "zoo", *LIGHT)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*zoo/b.onnx' in the --model folder is a symbolic link to '*gone.onnx', which does not exist; restore its target or remove the link"])


def test_upper_case_suffixes_and_any_explicit_file_name_are_checked(pytester):
    (pytester.path / "zoo").mkdir()
    save(classifier(), pytester.path / "zoo" / "A.ONNX")
    save(classifier(), pytester.path / "m.pb")
    result = pytester.runpytest_inprocess("--model", "zoo", "--model", "m.pb", *LIGHT, "--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    assert any(i.startswith("zoo/A.ONNX::target::accuracy[ort]") for i in ids) and "m.pb::target::accuracy[ort]" in ids


def test_models_in_subfolders_are_named_in_a_note(pytester):
    (pytester.path / "zoo" / "more").mkdir(parents=True)
    (pytester.path / "zoo" / ".venv").mkdir()
    save(classifier(), pytester.path / "zoo" / "a.onnx")
    save(classifier(), pytester.path / "zoo" / "more" / "b.onnx")
    save(classifier(), pytester.path / "zoo" / ".venv" / "hidden.onnx")
    result = pytester.runpytest_inprocess("--model", "zoo", *LIGHT)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--model zoo: .onnx files in its subfolders are not checked (e.g. more/b.onnx)*"])
    assert "hidden.onnx" not in result.stdout.str()


def test_a_folder_without_nested_models_gets_no_note(pytester):
    (pytester.path / "zoo").mkdir()
    save(classifier(), pytester.path / "zoo" / "a.onnx")
    result = pytester.runpytest_inprocess("--model", "zoo", *LIGHT)
    assert result.ret == 0 and "subfolders" not in result.stdout.str()
