"""review14: a baseline update that measured one block (`-k latency`) kept the other block, measured on
the old data, under the new data's fingerprint (build_options.data comes from this run). The next gate
on the new data compared the old data's accuracy figures with the new data's and passed; a gate on the
old data failed 'measured on other input data'. A kept block must have been measured on the same data."""

from __future__ import annotations

from onnx2trt_check import baseline as store
from onnx2trt_check.bench import LatencySamples
from onnx2trt_check.pytest_plugin.baseline_session import merged_baseline

OLD_DATA = {"feeds": 360, "sha256": "a" * 64}
NEW_DATA = {"feeds": 4, "sha256": "b" * 64}


def _old(data) -> store.Baseline:
    build = {"engine": "onnxruntime"} | ({"data": data} if data is not None else {})
    return store.Baseline("m.onnx", "sha", "ort", build, {"cpu": "c"}, {}, {"y": {"max_abs": 1.0}}, LatencySamples((0.5,) * 20, 1))


def _latency_part(data) -> dict:
    return {"model_name": "m.onnx", "model_sha256": "sha", "target": "ort", "build_options": {"engine": "onnxruntime", "data": data},
            "environment": {"cpu": "c"}, "latency": {"data": [0.25] * 20, "warmup": 1}}


def test_a_block_measured_on_other_data_is_not_kept_under_the_new_datas_fingerprint():
    merged = merged_baseline(_old(OLD_DATA), [_latency_part(NEW_DATA)], {})
    assert merged.build_options["data"] == NEW_DATA
    assert merged.accuracy == {}, "the accuracy figures of the old data are filed under the new data's fingerprint"


def test_a_block_of_the_same_data_or_of_a_baseline_without_fingerprint_is_kept():
    assert merged_baseline(_old(NEW_DATA), [_latency_part(NEW_DATA)], {}).accuracy == {"y": {"max_abs": 1.0}}
    assert merged_baseline(_old(None), [_latency_part(NEW_DATA)], {}).accuracy == {"y": {"max_abs": 1.0}}
