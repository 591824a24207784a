"""Red team 4: `pytest --bisect-plot DIR` claims each plot's name with an empty file before writing
it (so parallel workers never pick one name). When the plot could not be written (a full disk, a
size limit, Ctrl-C at that moment), the empty .html stayed in the user's folder and the run ended
in INTERNALERROR. Now nothing is left, and the item's layerwise lines say the plot was not written."""

import pytest
from tiny_models import classifier, save

from onnx2trt_check.bisection import plot
from onnx2trt_check.errors import OutputPathError


def test_an_unwritten_plot_leaves_no_empty_file(pytester, monkeypatch):
    save(classifier(batch=1), pytester.path / "m.onnx")

    def full_disk(report, path, *, title):
        raise OutputPathError(f"cannot write '{path}' (No space left on device); free space or choose another path")

    monkeypatch.setattr(plot, "layerwise_plot_html", full_disk)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--model=m.onnx", "--target=ort-fp16", "--min-sqnr=300", "--bisect-plot=plots")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*the plot was not written: cannot write*No space left on device*"])
    assert list((pytester.path / "plots").iterdir()) == []
