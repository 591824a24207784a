"""redteam14's open finding, fixed since: an int8 target asked for by name with nothing to run it on."""

from __future__ import annotations

from tiny_models import parse, save

FLOAT_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }
"""


def test_an_int8_target_asked_for_by_name_with_nothing_to_run_it_on_is_a_usage_error(pytester):
    """`--target ort-int8` on a run without --calibration-data whose models hold no Q/DQ: the only
    target asked for skips on every model and the run exits 0, a green gate that checked no int8
    (the same hole `--target trt-*` without TensorRT closed as a usage error, and the mirror of
    `--calibration-data` with no int8 target selected, which is one). Now: after the models
    load (where the 'targets not run' note learns whether ort-int8 runs), a run whose explicit
    --target selection holds only int8 targets none of its models can run is a usage error: "--target
    ort-int8: no calibration data and no model of the run holds Q/DQ nodes; pass --calibration-data
    calib.npz". A mixed folder (one QDQ model) keeps its per-model skip."""
    save(parse(FLOAT_MODEL), pytester.path / "m.onnx")
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort-int8", "-p", "no:cacheprovider")
    assert result.ret == 4, result.stdout.str()
