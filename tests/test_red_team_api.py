"""Red-team finding on api.check: CheckResult.passed was `exit_code == 0`, so a run that checked
nothing (--collect-only, or a model dropped by the selection) reported passed=True."""

from tiny_models import classifier, save

from onnx2trt_check import api


def test_a_run_that_runs_no_item_has_not_passed(tmp_path):
    model = save(classifier(), tmp_path / "m.onnx")
    result = api.check(model, pytest_args=["--collect-only", "-q", "--target", "ort"])
    assert result.exit_code == 0 and result.report["counts"]["passed"] == 0
    assert not result.passed


def test_a_run_whose_items_pass_has_passed(tmp_path):
    model = save(classifier(), tmp_path / "m.onnx")
    result = api.check(model, pytest_args=["-q", "--target", "ort", "-k", "structure"])
    assert result.passed and result.report["counts"]["passed"] >= 5


def test_optimize_takes_passes_as_one_comma_separated_text(tmp_path):
    # passes="fold_conv_bn" was read letter by letter: "unknown transform 'f'".
    model = save(classifier(), tmp_path / "m.onnx")
    result = api.optimize(model, passes="fold_conv_bn,simplify")
    assert result.settings.selected() == ("simplify", "fold_conv_bn")
