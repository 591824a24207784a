"""Red team 6: tolerances that excuse everything. `--atol 1e308`, `--rtol 1`, `--min-sqnr=-5
--min-cosine 0` (quantize) and the default atol 1e-4 on an output whose values are all below it were
accepted, and every comparison passed whatever the target computed: a dead target (all zeros)
passed too. Each value is legitimate beside another rule (a floor switched off for one output), so
none is refused; every face now says, where the verdict is shown, that the comparison cannot fail
(compare.OutputStats.accepts_zero: zeros compared under the same rules)."""

import numpy as np
import onnx.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check.cli.main import main
from onnx2trt_check.compare import Tolerance, compare_output
from onnx2trt_check.config import PRECISION_PROFILES

REF = [np.array([[1.0, -2.0, 0.5]]), np.array([[0.25, 3.0, -1.0]])]


@pytest.mark.parametrize(("tolerance", "vacuous"), [
    (Tolerance(), False),  # 1e-4 against values of 0.25..3
    (Tolerance(atol=1e308), True),
    (Tolerance(atol=0.0, rtol=1.0), True),  # |0 - ref| <= 1 * |ref|
    (Tolerance(atol=0.0, rtol=0.99), False),
    (Tolerance(atol=None, rtol=None, min_sqnr_db=0.0), True),  # zeros measure exactly 0 dB
    (Tolerance(atol=None, rtol=None, min_sqnr_db=0.1), False),
    (Tolerance(atol=None, rtol=None, min_cosine=0.0), True),
    (Tolerance(atol=None, rtol=None, min_cosine=0.01), False),
    (Tolerance(atol=2.9, rtol=0.0), False),  # 3.0 is beyond it
    (Tolerance(atol=3.0, rtol=0.0), True),
    (PRECISION_PROFILES["fp16"], False),
    (PRECISION_PROFILES["int8"], False),
])
def test_a_comparison_that_zeros_pass_is_marked(tolerance, vacuous):
    stats = compare_output("y", REF, [r.copy() for r in REF], tolerance)
    assert stats.passed and stats.accepts_zero is vacuous


def test_tiny_outputs_under_the_default_atol_and_zero_references():
    tiny = [np.full((1, 3), 5e-5)]
    assert compare_output("y", tiny, tiny, Tolerance()).accepts_zero
    zero = [np.zeros((1, 3))]
    assert not compare_output("y", zero, zero, Tolerance(atol=1e308)).accepts_zero  # zeros are the right answer there


def test_a_top1_floor_over_one_row_cannot_fail():
    # int8's 95% lets one row disagree below 20 rows: over one row of class scores it holds nothing.
    one_row = [np.array([[1.0, 3.0, 2.0]])]
    assert compare_output("y", one_row, one_row, Tolerance(atol=None, rtol=None, min_top1=0.95)).accepts_zero
    rows = [np.array([[1.0, 3.0, 2.0]] * 3)]
    assert not compare_output("y", rows, rows, Tolerance(atol=None, rtol=None, min_top1=0.95)).accepts_zero


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
g (float[2,4] x) => (float[2,3] y) {
  w = Constant<value = float[4,3] {0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2}>()
  y = MatMul(x, w)
}"""), path)
    return path


def test_pytest_summary_says_the_item_cannot_fail(pytester, model):
    result = pytester.runpytest_inprocess("--model", str(model), "--target", "ort", "--atol", "1e308")
    assert result.ret == 0
    assert "CANNOT FAIL: the tolerances in force pass an all-zero 'y'" in result.stdout.str()
    assert "CANNOT FAIL" not in pytester.runpytest_inprocess("--model", str(model), "--target", "ort").stdout.str()


def test_bisect_and_quantize_say_it(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bisect", str(model), "--target", "ort", "--atol", "0", "--rtol", "1"]) == 0
    assert "within tolerance; CANNOT FAIL" in capsys.readouterr().out
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).random((10, 2, 4)).astype(np.float32))
    assert main(["quantize", str(model), "-o", "q.onnx", "--calibration-data", "cal.npz", "--min-sqnr=-5", "--min-cosine", "0"]) == 0
    assert "CANNOT FAIL: the tolerances in force pass an all-zero 'y'" in capsys.readouterr().out


def _maybe(values):
    return st.none() | values


@given(st.lists(st.floats(-10, 10, width=32), min_size=2, max_size=12).map(lambda v: [np.array([v], np.float32)]),
       _maybe(st.sampled_from([0.0, 1e-4, 0.5, 5.0, 20.0])), _maybe(st.sampled_from([0.0, 1e-4, 0.5, 1.0, 2.0])),
       _maybe(st.sampled_from([0.0, 0.5, 0.99])), _maybe(st.sampled_from([-5.0, 0.0, 10.0])), _maybe(st.sampled_from([0.0, 0.5, 1.0])))
def test_accepts_zero_is_exactly_whether_zeros_pass(reference, atol, rtol, cosine, sqnr, top1):
    # The shortcuts of _accepts_zero (floors above 0, an element beyond atol + rtol |ref|) must give
    # what comparing zeros under the same rules gives.
    tolerance = Tolerance(atol=atol, rtol=rtol, min_cosine=cosine, min_sqnr_db=sqnr, min_top1=top1)
    stats = compare_output("y", reference, [r.copy() for r in reference], tolerance)
    zeros = compare_output("y", reference, [np.zeros_like(r) for r in reference], tolerance)
    assert stats.accepts_zero == (stats.passed and bool(np.any(reference[0])) and zeros.passed)
