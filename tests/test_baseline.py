"""The baseline store (files, validation, atomic writes) and the regression decisions."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check import baseline as bl
from onnx2trt_check import fileio
from onnx2trt_check.bench import LatencySamples
from onnx2trt_check.environment import environment_id
from onnx2trt_check.errors import ConfigError, OutputPathError

ENV = {"cpu": "Test CPU", "logical_cores": 2, "threads": 1, "os": "Linux x86_64", "gpu": None}
VERDICT_RANK = {"improvement": 0, "unchanged": 1, "regression": 2}


def make_baseline(**changes) -> bl.Baseline:
    fields = {
        "model_name": "models/resnet.onnx",
        "model_sha256": "ab" * 32,
        "target": "ort-fp16",
        "build_options": {"fp16": True, "keep_io_types": ["logits"]},
        "environment": ENV,
        "tool_versions": {"onnx": "1.2", "tensorrt": None},
        "accuracy": {"logits": {"max_abs": 0.01, "sqnr_db": math.inf, "top1": 0.99}},
        "latency": LatencySamples(tuple(i * 1e-6 + 1e-3 for i in range(30)), warmup=10),
        "created": "2024-01-02T03:04:05+00:00",
    }
    return bl.Baseline(**{**fields, **changes})


# ------------------------------------------------------------------------------------ the store

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789-", min_size=1, max_size=12)
figures = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-(10**6), 10**6)
metrics = names.filter(lambda n: n not in bl.DEFAULT_ACCURACY_MARGINS)  # known metrics have ranges: tested apart
accuracy = st.dictionaries(names, st.dictionaries(metrics, figures, max_size=6), max_size=4)
samples = st.lists(st.integers(0, 10**10), min_size=1, max_size=60).map(lambda ns: tuple(n / 1e9 for n in ns))
baselines = st.builds(
    make_baseline,
    model_name=names,
    target=names,
    build_options=st.dictionaries(names, st.booleans() | st.integers() | names, max_size=4),
    environment=st.dictionaries(names, st.integers() | names | st.none(), max_size=5),
    accuracy=accuracy,
    latency=st.none() | st.builds(LatencySamples, samples, warmup=st.integers(0, 100)),
)


@given(baselines)
def test_round_trip_is_equal(baseline):
    with tempfile.TemporaryDirectory() as store:
        path = bl.write_baseline(store, baseline)
        assert bl.load_baseline(path) == baseline


@given(baselines)
def test_same_content_gives_same_bytes(baseline):
    shuffled = dataclasses.replace(
        baseline,
        accuracy={k: dict(reversed(v.items())) for k, v in reversed(baseline.accuracy.items())},
        environment=dict(reversed(baseline.environment.items())),
    )
    assert bl.dumps_baseline(shuffled) == bl.dumps_baseline(baseline)


def test_samples_are_stored_rounded_to_ns(tmp_path):
    path = bl.write_baseline(tmp_path, make_baseline(latency=LatencySamples((1.23456789012e-3,) * 3)))
    assert bl.load_baseline(path).latency.seconds == (0.001234568,) * 3


def test_file_name_and_readable_layout(tmp_path):
    path = bl.write_baseline(tmp_path, make_baseline())
    assert path.name == f"resnet.ort-fp16.{environment_id(ENV)}.json"
    text = path.read_text()
    document = json.loads(text)
    assert document["schema_version"] == 1 and list(document) == sorted(document)
    assert text.startswith('{\n  "accuracy"') and text.endswith("}\n")
    assert document["latency"]["median"] == pytest.approx(1e-3 + 14.5e-6) and document["latency"]["rounds"] == 30


def test_existing_file_is_only_replaced_with_update(tmp_path):
    path = bl.write_baseline(tmp_path, make_baseline())
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="--baseline-update"):
        bl.write_baseline(tmp_path, make_baseline(model_sha256="cd" * 32))
    assert path.read_bytes() == before
    bl.write_baseline(tmp_path, make_baseline(model_sha256="cd" * 32), update=True)
    assert bl.load_baseline(path).model_sha256 == "cd" * 32


def test_failed_serialization_leaves_no_file(tmp_path):
    with pytest.raises(ConfigError, match="'out'.'max_abs' is <object"):
        bl.write_baseline(tmp_path, make_baseline(accuracy={"out": {"max_abs": object()}}))
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = bl.write_baseline(tmp_path, make_baseline())
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OutputPathError, match=r"cannot write .* \(disk full\)"):  # one line, exit code 4
        bl.write_baseline(tmp_path, make_baseline(model_sha256="cd" * 32), update=True)
    assert list(path.parent.iterdir()) == [path] and path.read_bytes() == before


def _valid_document(tmp_path) -> dict:
    return json.loads(bl.write_baseline(tmp_path, make_baseline()).read_text())


def _load_document(tmp_path, document) -> Path:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


@pytest.mark.parametrize("text", ["{not json", "", '{"schema_version": 1', "\xff\xfe"])
def test_corrupt_file_is_a_config_error_and_not_overwritten(tmp_path, text):
    path = bl.baseline_path(tmp_path, model_name="models/resnet.onnx", target="ort-fp16", environment=ENV)
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"edited|resnet") as info:
        bl.load_baseline(path)
    assert str(path) in str(info.value) and "--baseline-update" in str(info.value)
    with pytest.raises(ConfigError):
        bl.write_baseline(tmp_path, make_baseline())
    assert path.read_text() == text


@pytest.mark.parametrize("version", [0, 2, "1", None, True])
def test_wrong_schema_version(tmp_path, version):
    document = _valid_document(tmp_path)
    document["schema_version"] = version
    path = _load_document(tmp_path, document)
    with pytest.raises(ConfigError, match=rf"{path.name}.*schema_version is .*expected 1.*--baseline-update"):
        bl.load_baseline(path)


@pytest.mark.parametrize("keys", [keys for keys, _ in bl._REQUIRED_FIELDS] + [("schema_version",)])
def test_missing_field_is_named(tmp_path, keys):
    document = _valid_document(tmp_path)
    parent = document
    for key in keys[:-1]:
        parent = parent[key]
    del parent[keys[-1]]
    with pytest.raises(ConfigError, match=rf"edited\.json.*{keys[-1]}.*--baseline-update"):
        bl.load_baseline(_load_document(tmp_path, document))


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d["model"].update(name=5), "model.name"),
        (lambda d: d["target"].update(build_options=[]), "target.build_options"),
        (lambda d: d.update(accuracy=[]), "accuracy"),
        (lambda d: d["accuracy"]["logits"].update(max_abs="0.1"), "max_abs"),
        (lambda d: d["accuracy"].update(logits=0.5), "logits"),
        (lambda d: d["latency"].update(data=[0.1, "x"]), "latency.data"),
        (lambda d: d["latency"].update(data=[0.1, -1.0]), "latency.data"),
        (lambda d: d["latency"].update(warmup=1.5), "latency.warmup"),
        (lambda d: d.update(latency=[1.0]), "latency"),
        (lambda d: d.update(created=20240101), "created"),
    ],
)
def test_mistyped_field_is_named(tmp_path, edit, named):
    document = _valid_document(tmp_path)
    edit(document)
    with pytest.raises(ConfigError, match=rf"edited\.json.*{named}.*--baseline-update"):
        bl.load_baseline(_load_document(tmp_path, document))


def test_top_level_not_an_object(tmp_path):
    with pytest.raises(ConfigError, match="top level is list"):
        bl.load_baseline(_load_document(tmp_path, [1, 2]))


def test_find_unused(tmp_path):
    used = bl.write_baseline(tmp_path, make_baseline())
    other = bl.write_baseline(tmp_path, make_baseline(target="ort-int8"))
    (tmp_path / "notes.txt").write_text("not a baseline")
    assert bl.find_unused(tmp_path, [used]) == [other]
    assert bl.find_unused(tmp_path, [str(used), other]) == []


# --------------------------------------------------------------------------- accuracy decisions

# SQNR above the ceiling is one figure (float rounding), so its margin is tested below the ceiling.
HIGHER_IS_BETTER = {"sqnr_db": (-50.0, bl.SQNR_CEILING_DB - 2.0), "cosine": (-1.0, 1.0), "top1": (0.0, 1.0)}
LOWER_IS_BETTER = ["max_abs", "mean_abs"]
EPS = 1e-3  # how far past / short of the margin the boundary tests step (relative to the margin)


@pytest.mark.parametrize("metric", sorted(HIGHER_IS_BETTER))
@given(fraction=st.floats(0.0, 1.0))
def test_higher_is_better_margin_boundary(metric, fraction):
    low, high = HIGHER_IS_BETTER[metric]
    base = low + fraction * (high - low)
    margin = bl.DEFAULT_ACCURACY_MARGINS[metric].absolute
    assert bl.decide_accuracy(metric, base, base - margin * (1 + EPS)).verdict == "regression"
    assert bl.decide_accuracy(metric, base, base - margin * (1 - EPS)).verdict == "unchanged"
    assert bl.decide_accuracy(metric, base, base + margin * (1 - EPS)).verdict == "unchanged"
    assert bl.decide_accuracy(metric, base, base + margin * (1 + EPS)).verdict == "improvement"


def test_stated_default_margins():
    # The documented defaults, spelled out independently of the table under test.
    assert bl.decide_accuracy("sqnr_db", 40.0, 38.9).verdict == "regression"
    assert bl.decide_accuracy("sqnr_db", 40.0, 39.1).verdict == "unchanged"
    assert bl.decide_accuracy("cosine", 0.9999, 0.99975).verdict == "regression"
    assert bl.decide_accuracy("top1", 0.95, 0.945).verdict == "unchanged"
    assert bl.decide_accuracy("top1", 0.95, 0.935).verdict == "regression"
    assert bl.decide_accuracy("max_abs", 0.01, 0.0121).verdict == "regression"
    assert bl.decide_accuracy("max_abs", 0.01, 0.0119).verdict == "unchanged"
    assert bl.decide_accuracy("mean_abs", 1e-9, 2e-9).verdict == "unchanged"
    assert bl.decide_accuracy("max_abs", 3e-6, 8e-6).verdict == "unchanged"  # fp32 rounding on other CPU kernels
    assert bl.decide_accuracy("sqnr_db", 130.0, 95.0).verdict == "unchanged"  # both beyond the 80 dB ceiling
    assert bl.decide_accuracy("sqnr_db", 130.0, 78.9).verdict == "regression"
    assert "max_rel" not in bl.DEFAULT_ACCURACY_MARGINS  # in the figures, not gated


@pytest.mark.parametrize(
    ("metric", "base", "at_margin", "past_margin"),
    [
        ("sqnr_db", 40.0, 39.0, 38.99),
        ("top1", 0.95, 0.94, 0.9399),
        ("cosine", 0.9999, 0.9998, 0.99979),
        ("max_abs", 0.5, 0.6, 0.6001),
    ],
)
def test_exactly_at_the_margin_is_unchanged(metric, base, at_margin, past_margin):
    # "More than the margin": exactly one point / 1 dB / 1e-4 / 20% is still unchanged.
    assert bl.decide_accuracy(metric, base, at_margin).verdict == "unchanged"
    assert bl.decide_accuracy(metric, base, past_margin).verdict == "regression"


@pytest.mark.parametrize("metric", LOWER_IS_BETTER)
@given(base=st.floats(1e-3, 1e3))
def test_error_metric_relative_margin_boundary(metric, base):
    rel = bl.DEFAULT_ACCURACY_MARGINS[metric].relative
    assert bl.decide_accuracy(metric, base, base * (1 + rel) * (1 + EPS)).verdict == "regression"
    assert bl.decide_accuracy(metric, base, base * (1 + rel) * (1 - EPS)).verdict == "unchanged"
    assert bl.decide_accuracy(metric, base, base / ((1 + rel) * (1 - EPS))).verdict == "unchanged"
    assert bl.decide_accuracy(metric, base, base / ((1 + rel) * (1 + EPS))).verdict == "improvement"


@pytest.mark.parametrize("metric", LOWER_IS_BETTER)
@given(base=st.floats(0.0, 1e-9), factor=st.floats(1.0, 100.0))
def test_error_metric_absolute_floor(metric, base, factor):
    floor = bl.DEFAULT_ACCURACY_MARGINS[metric].absolute
    # Below the floor any relative rise is noise; a rise clearly past the floor counts.
    assert bl.decide_accuracy(metric, base, base + floor * (1 - EPS) * min(factor, 1.0)).verdict == "unchanged"
    assert bl.decide_accuracy(metric, base, base + floor * (1 + EPS) * factor).verdict == "regression"


@pytest.mark.parametrize("metric", sorted(bl.DEFAULT_ACCURACY_MARGINS))
@given(base=st.floats(-1e3, 1e3), worse_a=st.floats(0, 10), worse_b=st.floats(0, 10))
def test_accuracy_decision_is_monotone(metric, base, worse_a, worse_b):
    sign = -1.0 if bl.DEFAULT_ACCURACY_MARGINS[metric].higher_is_better else 1.0
    small, large = sorted([worse_a, worse_b])
    if sign > 0:
        base = abs(base)  # error metrics are non-negative
    verdict_small = bl.decide_accuracy(metric, base, base + sign * small).verdict
    verdict_large = bl.decide_accuracy(metric, base, base + sign * large).verdict
    assert VERDICT_RANK[verdict_large] >= VERDICT_RANK[verdict_small]


@pytest.mark.parametrize(
    ("metric", "base", "current", "verdict"),
    [
        ("max_abs", 0.1, math.nan, "regression"),
        ("max_abs", math.nan, 0.1, "missing"),  # a NaN baseline is no figure: never an improvement
        ("cosine", math.nan, math.nan, "missing"),
        ("sqnr_db", math.inf, math.inf, "unchanged"),
        ("sqnr_db", math.inf, 60.0, "regression"),
        ("sqnr_db", 60.0, math.inf, "improvement"),
        ("max_abs", 0.0, 0.5, "regression"),
        ("max_abs", 0.1, math.inf, "regression"),
        ("latency_ms", 1.0, 9.0, "skipped"),
    ],
)
def test_special_values(metric, base, current, verdict):
    assert bl.decide_accuracy(metric, base, current).verdict == verdict


def test_compare_accuracy_reports_every_metric():
    decisions = bl.compare_accuracy(
        {"a": {"max_abs": 0.1, "cosine": 0.99}, "gone": {"top1": 1.0}},
        {"a": {"max_abs": 0.5, "sqnr_db": 30.0}},
    )
    found = {(d.output, d.metric): d.verdict for d in decisions}
    assert found == {  # a figure one side lacks is missing, never a pass by omission
        ("a", "cosine"): "missing",
        ("a", "max_abs"): "regression",
        ("a", "sqnr_db"): "missing",
        ("gone", "top1"): "missing",
    }
    regression = next(d for d in decisions if d.verdict == "regression")
    assert regression.ratio == pytest.approx(5.0) and regression.delta == pytest.approx(0.4)


# ---------------------------------------------------------------------------- latency decisions

# Realistic latency sets: a few hundred microseconds with up to 40% spread.
latency_sets = st.lists(st.floats(1.0, 1.4), min_size=20, max_size=80).map(lambda xs: [x * 3e-4 for x in xs])


@given(latency_sets)
def test_identical_samples_are_never_a_regression(data):
    assert bl.decide_latency(data, list(data)).verdict == "unchanged"


@given(latency_sets)
def test_one_and_a_half_times_slower_is_a_regression(data):
    assert bl.decide_latency(data, [x * 1.5 for x in data]).verdict == "regression"
    assert bl.decide_latency(data, [x / 1.5 for x in data]).verdict == "improvement"


@given(latency_sets, latency_sets, st.floats(0.5, 2.0), st.floats(0.5, 2.0))
def test_larger_slowdown_is_never_less_of_a_regression(baseline, current, scale_a, scale_b):
    small, large = sorted([scale_a, scale_b])
    verdict_small = bl.decide_latency(baseline, [x * small for x in current]).verdict
    verdict_large = bl.decide_latency(baseline, [x * large for x in current]).verdict
    assert VERDICT_RANK[verdict_large] >= VERDICT_RANK[verdict_small]


def test_significant_but_small_shift_is_not_a_regression():
    base = [3e-4 * (1 + i * 1e-4) for i in range(50)]
    assert bl.decide_latency(base, [x * 1.03 for x in base]).verdict == "unchanged"  # p tiny, ratio 1.03
    assert bl.decide_latency(base, [x * 1.03 for x in base], rule=bl.LatencyRule(max_ratio=1.02)).verdict == "regression"
    assert bl.decide_latency(base, [x / 1.03 for x in base]).verdict == "unchanged"
    assert bl.decide_latency(base, [x / 1.03 for x in base], rule=bl.LatencyRule(max_ratio=1.02)).verdict == "improvement"


def test_large_but_insignificant_shift_is_not_a_regression():
    base = [1e-3] * 10 + [2e-3] + [3e-3] * 10
    current = [1e-3] * 10 + [2.4e-3] + [3e-3] * 10  # median 1.2x, but one sample of 21 moved
    decision = bl.decide_latency(base, current)
    assert decision.ratio == pytest.approx(1.2) and decision.verdict == "unchanged"


def test_too_few_samples_are_skipped():
    decision = bl.decide_latency([1e-3] * 19, [2e-3] * 100)
    assert decision.verdict == "skipped" and "19 baseline" in decision.reason and "need 20" in decision.reason
    assert bl.decide_latency([1e-3] * 5, [2e-3] * 5, rule=bl.LatencyRule(min_samples=5)).verdict == "regression"


def test_environment_difference_skips_latency_but_not_accuracy():
    baseline = make_baseline()
    slower = LatencySamples(tuple(2 * s for s in baseline.latency.seconds))
    decisions = bl.compare_to_baseline(
        baseline, accuracy={"logits": {"max_abs": 0.5}}, latency=slower, environment={**ENV, "threads": 2}
    )
    latency = decisions[-1]
    assert latency.kind == "latency" and latency.verdict == "skipped"
    assert latency.reason == "environment differs: threads: 1 != 2"
    assert [d.verdict for d in decisions if d.metric == "max_abs"] == ["regression"]
    same_env = bl.compare_to_baseline(baseline, accuracy={}, latency=slower, environment=dict(ENV))
    assert same_env[-1].verdict == "regression"


def test_missing_latency_is_skipped_with_reason():
    decisions = bl.compare_to_baseline(make_baseline(latency=None), accuracy={}, latency=None, environment=ENV)
    assert decisions[-1].verdict == "skipped" and "no latency samples in the baseline" in decisions[-1].reason


# --------------------------------------------------------------------- environment (file names)


@given(st.dictionaries(names, st.integers() | names | st.none(), max_size=6))
def test_environment_id_is_stable_and_order_free(env):
    ident = environment_id(env)
    assert len(ident) == 12 and int(ident, 16) >= 0
    assert environment_id(dict(reversed(env.items()))) == ident
    assert environment_id({**env, "threads_changed": object.__name__}) != ident


def test_environment_key_without_gpu(monkeypatch):
    from onnx2trt_check import environment

    environment.gpu_info.cache_clear()
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    key = environment.environment_key(threads=3)
    environment.gpu_info.cache_clear()
    assert key["gpu"] is None and key["threads"] == 3 and key["logical_cores"] == os.cpu_count()
    assert set(key) == {"cpu", "logical_cores", "threads", "os", "gpu"} and key["cpu"]


def test_environment_key_reads_nvidia_smi(tmp_path, monkeypatch):
    from onnx2trt_check import environment

    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\nif [ -n "$1" ]; then echo "NVIDIA A100-SXM4-40GB, 535.104.05"; '
        'else echo "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |"; fi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    environment.gpu_info.cache_clear()
    try:
        gpu = environment.environment_key()["gpu"]
    finally:
        environment.gpu_info.cache_clear()
    assert gpu == {"name": "NVIDIA A100-SXM4-40GB", "driver": "535.104.05", "cuda": "12.2"}


def test_tool_versions_names_every_tool():
    import onnx

    from onnx2trt_check.environment import tool_versions

    versions = tool_versions()
    assert set(versions) == {"onnx", "onnxruntime", "tensorrt", "tensorrt_rtx", "polygraphy", "onnx2trt_check"}
    assert versions["onnx"] == onnx.__version__


# ------------------------------------------------------------------ keys and figure validation


def test_two_models_of_one_file_name_never_share_a_baseline(tmp_path):
    store_dir = tmp_path / "baselines"
    keys = [bl.model_key(tmp_path / "exports" / folder / "model.onnx", store_dir) for folder in ("a", "b")]
    assert keys == ["exports/a/model.onnx", "exports/b/model.onnx"]
    paths = {bl.baseline_path(store_dir, model_name=key, target="ort", environment=ENV) for key in keys}
    assert len(paths) == 2 and all(p.name.startswith("model.ort.") for p in paths)
    outside = bl.model_key(tmp_path.parent / "elsewhere" / "model.onnx", store_dir)
    assert outside.startswith("../") and bl.baseline_path(store_dir, model_name=outside, target="ort", environment=ENV).is_relative_to(store_dir)


@given(st.lists(st.text(min_size=1, max_size=6).filter(lambda t: "/" not in t and "\x00" not in t), min_size=1, max_size=3),
       st.lists(st.text(min_size=1, max_size=6).filter(lambda t: "/" not in t and "\x00" not in t), min_size=1, max_size=3))
def test_distinct_keys_map_to_distinct_files_inside_the_store(first, second):
    store_dir = Path("/store")
    a, b = (bl.baseline_path(store_dir, model_name="/".join(parts), target="ort", environment=ENV) for parts in (first, second))
    assert (a == b) == (first == second)
    assert a.is_relative_to(store_dir) and ".." not in a.relative_to(store_dir).parts


@pytest.mark.parametrize(
    ("figures", "named"),
    [
        ({"logits": {"max_abs": math.nan}}, "'logits'.'max_abs' is nan, not a finite number"),
        ({"logits": {"cosine": math.inf}}, "'logits'.'cosine' is inf, not a finite number"),
        ({"logits": {"sqnr_db": math.nan}}, "'logits'.'sqnr_db' is nan"),
        ({"logits": {"top1": 1.5}}, "'logits'.'top1' is 1.5, outside"),
        ({"logits": {"max_abs": -0.1}}, "'logits'.'max_abs' is -0.1, outside"),
        ({"logits": {"max_rel": -math.inf}}, "'logits'.'max_rel' is -inf, not a finite number"),
    ],
)
def test_a_figure_that_no_measurement_gives_fails_naming_file_and_field(tmp_path, figures, named):
    document = _valid_document(tmp_path)
    document["accuracy"] = figures
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document))  # json writes NaN / Infinity, and reads them back
    with pytest.raises(ConfigError, match=rf"edited\.json: accuracy {named}"):
        bl.load_baseline(path)


def test_infinities_a_measurement_gives_are_kept(tmp_path):
    baseline = make_baseline(accuracy={"logits": {"sqnr_db": math.inf, "max_rel": math.inf, "max_abs": 0.0}})
    assert bl.load_baseline(bl.write_baseline(tmp_path, baseline)).accuracy == baseline.accuracy


@pytest.mark.parametrize("data", [[], [0.001, math.inf], [math.nan]])
def test_latency_samples_must_be_finite_and_present(tmp_path, data):
    document = _valid_document(tmp_path)
    document["latency"]["data"] = data
    with pytest.raises(ConfigError, match=r"latency\.data.*non-empty list of finite"):
        bl.load_baseline(_load_document(tmp_path, document))


@pytest.mark.parametrize("rule", [{"max_ratio": math.nan}, {"max_ratio": math.inf}, {"max_ratio": 0.9}, {"alpha": math.nan}, {"alpha": 0.0}, {"min_samples": 0}])
def test_a_latency_rule_that_could_never_fire_is_refused(rule):
    with pytest.raises(ConfigError):
        bl.LatencyRule(**rule)
