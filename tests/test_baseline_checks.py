"""Latency items and versioned baselines in `pytest --model`: the create / update / pass / regress
cycle, broken baseline files, another machine's baseline, and xdist (only the controller writes)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats  # noqa: F401  pytester restores sys.modules after each in-process run; scipy.stats, first imported inside one, cannot load its C extensions a second time
from hypothesis import given
from hypothesis import strategies as st
from tiny_models import classifier, save

from onnx2trt_check import baseline as store
from onnx2trt_check.bench import LatencySamples
from onnx2trt_check.environment import environment_id
from onnx2trt_check.pytest_plugin.baseline_session import merged_baseline
from onnx2trt_check.pytest_plugin.baselines import (
    decision_row,
    latency_figures,
)
from onnx2trt_check.runtime import run_model
from onnx2trt_check.targets import timing
from onnx2trt_check.targets.ort import OrtTarget

# Only the `ort` target and this feature's items (plus the core accuracy item): other families and
# targets come and go, and leaving them out keeps counts stable and the runs fast.
ONLY = ("--target", "ort", "-k", "target or latency or baseline")
FAST = ("--latency", "--latency-rounds", "25", "--latency-warmup", "2")
# Two runs of a 10 us model on a shared 2-core machine differ by several x; the injected slowdown
# is over 100x, so a loose ratio keeps the gate honest without flaking.
LOOSE = ("--latency-max-ratio", "20")
SLOWDOWN_S = 0.003


@pytest.fixture
def model_path(pytester):
    return save(classifier(), pytester.path / "m.onnx")


def run(pytester, *args):
    """One in-process run; returns the result and {'family::name': (outcome, figures, message)}."""
    result = pytester.runpytest_inprocess("--model", "m.onnx", *ONLY, "--report-json", "r.json", *args)
    families = json.loads((pytester.path / "r.json").read_text())["models"]["m.onnx"]["families"]
    items = {f"{fam}::{name}": (c["outcome"], c["figures"], c["message"]) for fam, f in families.items() for name, c in f["checks"].items()}
    return result, items


def outcomes(items) -> dict[str, str]:
    return {key: value[0] for key, value in items.items()}


def add_noise(monkeypatch):
    """Outputs off by 5e-5: inside the fp32 tolerance (1e-4), far beyond the baseline's 1e-6."""
    original = OrtTarget.run
    monkeypatch.setattr(OrtTarget, "run", lambda self, path, feeds: [{k: v + np.float32(5e-5) for k, v in o.items()} for o in original(self, path, feeds)])


def slow_ort(monkeypatch):
    """Every timed call also sleeps SLOWDOWN_S, over 100x what the tiny model takes."""

    def timed_runner(self, path, feed):
        call = timing.ort_runner(path, feed)
        return lambda: (call(), time.sleep(SLOWDOWN_S))

    monkeypatch.setattr(OrtTarget, "timed_runner", timed_runner, raising=False)


def only_baseline(pytester) -> Path:
    files = sorted((pytester.path / "bl").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


# --------------------------------------------------------------------------------- the full cycle


def test_create_update_pass_regress_update_pass(pytester, model_path):
    args = ("--baseline-dir", "bl", *FAST, *LOOSE)
    result, items = run(pytester, *args)
    assert outcomes(items) == {"target[ort]::accuracy": "passed", "latency[ort]::latency": "passed", "baseline[ort]::accuracy": "failed", "baseline[ort]::latency": "failed"}
    command = f"pytest --model m.onnx --target ort -k 'target or latency or baseline' --report-json r.json --baseline-dir bl {' '.join(FAST + LOOSE)} --baseline-update"
    result.stdout.fnmatch_lines([f"no accuracy baseline for m.onnx on target ort in *bl (expected m.ort.*.json); create it with: {command}"])
    assert not (pytester.path / "bl").exists()

    result, items = run(pytester, *args, "--baseline-update")
    assert set(outcomes(items).values()) == {"passed"} and items["baseline[ort]::accuracy"][1]["message"] == "baseline updated"
    written = store.load_baseline(only_baseline(pytester))
    assert written.accuracy["logits"]["max_abs"] < 1e-5 and len(written.latency) == 25
    result.stdout.fnmatch_lines(["updated *bl/m.ort.*.json (accuracy, latency)"])

    result, items = run(pytester, *args)
    assert set(outcomes(items).values()) == {"passed"}
    assert {d["verdict"] for d in items["baseline[ort]::accuracy"][1]["decisions"]} == {"unchanged"}

    with pytest.MonkeyPatch.context() as patch:  # noisy outputs, slow calls
        add_noise(patch)
        slow_ort(patch)
        assert_regressions_fail(pytester, args, command)
        run(pytester, *args, "--baseline-update")
        assert store.load_baseline(only_baseline(pytester)).latency.seconds[0] > SLOWDOWN_S
        result, items = run(pytester, *args)
        assert set(outcomes(items).values()) == {"passed"} and result.ret == pytest.ExitCode.OK

    # the model is fast and exact again: improvements pass and are reported
    result, items = run(pytester, *args)
    assert set(outcomes(items).values()) == {"passed"}
    assert items["baseline[ort]::latency"][1]["verdict"] == "improvement"
    assert items["baseline[ort]::accuracy"][1]["verdict"] == "improvement"
    result.stdout.fnmatch_lines(["*baseline[[]ort[]]::latency  IMPROVEMENT*", "*latency median: *[[]improvement[]]*"])


def assert_regressions_fail(pytester, args, command):
    result, items = run(pytester, *args)
    assert outcomes(items) == {"target[ort]::accuracy": "passed", "latency[ort]::latency": "passed", "baseline[ort]::accuracy": "failed", "baseline[ort]::latency": "failed"}
    result.stdout.fnmatch_lines(
        [
            "*regression(s) against baseline *bl/m.ort.*.json:",
            "*logits.max_abs: baseline *e-07, current 5*e-05, ratio *x [[]regression[]] (max_abs worse by*",
            f"if the change is intended, update the baseline: {command}",
        ]
    )
    assert "the model file changed" not in result.stdout.str()
    latency = {d["metric"]: d for d in items["baseline[ort]::latency"][1]["decisions"]}["median"]
    assert latency["verdict"] == "regression" and latency["ratio"] > 20 and latency["current"] > SLOWDOWN_S
    result.stdout.fnmatch_lines(["*latency median: baseline * ms, current * ms, ratio *x [[]regression[]]*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_regression_of_a_changed_model_file_says_the_file_changed(pytester, model_path, monkeypatch):
    # The model's sha256 was stored but never shown: whoever bisects a regression first asks
    # whether the model or the tools changed.
    run(pytester, "--baseline-dir", "bl", "--baseline-update")
    recorded = store.load_baseline(only_baseline(pytester))
    changed = classifier()
    changed.doc_string = "re-exported"
    save(changed, model_path)
    add_noise(monkeypatch)
    result, items = run(pytester, "--baseline-dir", "bl")
    assert outcomes(items)["baseline[ort]::accuracy"] == "failed" and items["baseline[ort]::accuracy"][1]["model_changed"] is True
    result.stdout.fnmatch_lines([f"the model file changed since the baseline was recorded ({recorded.created}; sha256 {recorded.model_sha256[:12]} then, * now)"])


def test_a_pass_of_a_changed_model_file_says_what_the_gate_compared(pytester, model_path):
    # A replaced model agrees with its own reference as well as the old one did: the row read
    # PASSED with no word that the baseline was recorded for another file.
    run(pytester, "--baseline-dir", "bl", "--baseline-update")
    changed = classifier()
    changed.doc_string = "re-exported"
    save(changed, model_path)
    result, items = run(pytester, "--baseline-dir", "bl")
    assert outcomes(items)["baseline[ort]::accuracy"] == "passed" and items["baseline[ort]::accuracy"][1]["model_changed"] is True
    result.stdout.fnmatch_lines(["*baseline[[]ort[]]*the model file changed since this baseline (*): the gate compares each target with this model's own reference*"])


def test_update_without_latency_keeps_the_recorded_latency(pytester, model_path, monkeypatch):
    run(pytester, "--baseline-dir", "bl", *FAST, "--baseline-update")
    before = store.load_baseline(only_baseline(pytester))
    add_noise(monkeypatch)
    run(pytester, "--baseline-dir", "bl", "--baseline-update")  # accuracy only, with noisy outputs
    after = store.load_baseline(only_baseline(pytester))
    assert after.latency == before.latency and after.accuracy != before.accuracy


# ------------------------------------------------------------------------------ broken baselines


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text[: len(text) // 2], " is not readable JSON (*); run with --baseline-update to rewrite it"),
        (lambda text: text.replace('"max_abs": ', '"max_abs": "tiny", "was": ', 1), ": accuracy 'logits'.'max_abs' is 'tiny', expected a number; run with --baseline-update to rewrite it"),
        (lambda text: _edit(text, lambda d: d["accuracy"]["logits"].update({k: math.nan for k in d["accuracy"]["logits"]})),
         ": accuracy 'logits'.'cosine' is nan, not a finite number; run with --baseline-update to rewrite it"),
        (lambda text: _edit(text, lambda d: d["latency"]["data"].__setitem__(0, math.inf)),
         ": field 'latency.data' must be a non-empty list of finite non-negative seconds; run with --baseline-update to rewrite it"),
    ],
    ids=["truncated", "hand-edited", "all-nan", "infinite-latency"],
)
def test_a_broken_baseline_fails_naming_the_file_and_stays_untouched(pytester, model_path, edit, message):
    run(pytester, "--baseline-dir", "bl", *FAST, "--baseline-update")
    path = only_baseline(pytester)
    path.write_text(edit(path.read_text()))
    broken = path.read_bytes()
    result, items = run(pytester, "--baseline-dir", "bl")
    assert items["baseline[ort]::accuracy"][0] == "failed"
    result.stdout.fnmatch_lines([f"baseline {path}{message}", "fix the file by hand, or rewrite it*: pytest --model m.onnx * --baseline-update"])
    assert path.read_bytes() == broken
    _, items = run(pytester, "--baseline-dir", "bl", "--baseline-update")
    assert items["baseline[ort]::accuracy"][0] == "passed" and store.load_baseline(path).accuracy["logits"]["top1"] == 1.0


def _edit(text: str, change) -> str:
    document = json.loads(text)
    change(document)
    return json.dumps(document)  # NaN and Infinity as Python's json writes and reads them


def test_an_empty_or_partial_accuracy_baseline_fails(pytester, model_path):
    run(pytester, "--baseline-dir", "bl", "--baseline-update")
    path = only_baseline(pytester)
    path.write_text(_edit(path.read_text(), lambda d: d["accuracy"].clear()))
    result, items = run(pytester, "--baseline-dir", "bl")
    assert items["baseline[ort]::accuracy"][0] == "failed"
    result.stdout.fnmatch_lines(["no accuracy baseline for m.onnx on target ort in *bl (expected m.ort.*.json)*"])
    path.write_text(_edit(path.read_text(), lambda d: d["accuracy"].update(logits={"max_abs": 0.0})))
    result, items = run(pytester, "--baseline-dir", "bl")
    assert items["baseline[ort]::accuracy"][0] == "failed"
    result.stdout.fnmatch_lines(["*figure(s) missing from, 0 regression(s) against baseline *", "  logits.cosine: baseline -, current *[[]missing[]] (logits.cosine is not in the baseline)"])


def test_two_models_of_one_file_name_keep_two_baselines(pytester):
    for folder, seed in (("a", 0), ("b", 1)):
        (pytester.path / folder).mkdir()
        save(classifier(seed=seed), pytester.path / folder / "model.onnx")
    args = ("--model", "a/model.onnx", "--model", "b/model.onnx", *ONLY, "--baseline-dir", "bl")
    pytester.runpytest_inprocess(*args, "--baseline-update").assert_outcomes(passed=4)
    written = sorted(p.relative_to(pytester.path / "bl").parent.as_posix() for p in (pytester.path / "bl").rglob("*.json"))
    assert written == ["a", "b"]
    for folder in ("a", "b"):
        baseline = store.load_baseline(next((pytester.path / "bl" / folder).glob("model.ort.*.json")))
        assert baseline.model_name == f"{folder}/model.onnx" and baseline.model_sha256 == store_sha(pytester.path / folder / "model.onnx")
    pytester.runpytest_inprocess(*args).assert_outcomes(passed=4)


def store_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_machine_baseline_compares_accuracy_and_skips_latency(pytester, model_path, monkeypatch):
    run(pytester, "--baseline-dir", "bl", *FAST, "--baseline-update")
    mine = only_baseline(pytester)
    document = json.loads(mine.read_text())
    document["environment"]["cpu"] = "Other CPU"
    other = mine.with_name(f"m.ort.{environment_id(document['environment'])}.json")
    other.write_text(json.dumps(document))
    mine.unlink()
    result, items = run(pytester, "--baseline-dir", "bl", *FAST, "-rs")
    assert outcomes(items)["baseline[ort]::accuracy"] == "passed" and outcomes(items)["baseline[ort]::latency"] == "skipped"
    assert "cpu: 'Other CPU' != " in items["baseline[ort]::accuracy"][1]["environment_differs"]
    result.stdout.fnmatch_lines([f"*environment differs from {other.name} (cpu: 'Other CPU' != *); record this machine's baseline with: pytest *--baseline-update"])
    result.stdout.no_fnmatch_line("*unused baseline*")
    add_noise(monkeypatch)
    _, items = run(pytester, "--baseline-dir", "bl", *FAST)
    assert outcomes(items)["baseline[ort]::accuracy"] == "failed"  # really compared with the other machine's figures


# --------------------------------------------------------------------------- configuration, misc


def test_without_a_baseline_folder_there_are_no_baseline_items(pytester, model_path):
    result = pytester.runpytest_inprocess("--model", "m.onnx", *ONLY, "--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == ["m.onnx::target::accuracy[ort]"]
    result = pytester.runpytest_inprocess("--model", "m.onnx", *ONLY, "--latency", "--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == ["m.onnx::target::accuracy[ort]", "m.onnx::latency::latency[ort]"]


@pytest.mark.parametrize("write", [lambda p: p.makepyprojecttoml("[tool.onnx2trt_check]\nbaseline_dir = 'bl'\n"), lambda p: p.makeini("[pytest]\nonnx2trt_baseline_dir = bl\n")], ids=["pyproject", "ini"])
def test_baseline_folder_from_configuration(pytester, model_path, write):
    write(pytester)
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "-k", "baseline")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"no accuracy baseline * in {pytester.path / 'bl'} *; create it with: pytest --model m.onnx --target ort -k baseline --baseline-update"])
    pytester.runpytest_inprocess("--model", "m.onnx", "--target", "ort", "-k", "baseline", "--baseline-update").assert_outcomes(passed=1)
    assert len(list((pytester.path / "bl").glob("m.ort.*.json"))) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline-update"], "--baseline-update needs a baseline folder; pass --baseline-dir DIR*"),
        (["--latency-rounds", "0"], "--latency-rounds 0 / --latency-warmup 10: pass rounds >= 1 and warmup >= 0"),
        (["--latency-max-ratio", "0.5"], "--latency-max-ratio 0.5 is not a finite ratio >= 1; pass e.g. 1.05"),
        (["--latency-max-ratio", "nan"], "--latency-max-ratio nan is not a finite ratio >= 1*"),
        (["--latency-max-ratio", "inf"], "--latency-max-ratio inf is not a finite ratio >= 1*"),
        (["--latency-max-ratio", "-1"], "--latency-max-ratio -1.0 is not a finite ratio >= 1*"),
    ],
)
def test_bad_options_are_usage_errors(pytester, model_path, args, message):
    result = pytester.runpytest_inprocess("--model", "m.onnx", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_unused_baselines_are_reported(pytester, model_path):
    run(pytester, "--baseline-dir", "bl", "--baseline-update")
    stale = pytester.path / "bl" / "gone.ort.0123456789ab.json"
    stale.write_text(only_baseline(pytester).read_text())
    result, _ = run(pytester, "--baseline-dir", "bl")
    result.stdout.fnmatch_lines([f"unused baseline (no test of this run used it): {stale}"])
    result.stdout.no_fnmatch_line("unused baseline*m.ort.*")


def test_xdist_controller_writes_each_baseline_once(pytester, monkeypatch):
    # --latency under xdist with a baseline folder is a usage error (redteam14): test_redteam14_latency_xdist.py
    # When this suite itself runs under xdist, the variable would leak into the inner controller.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    save(classifier(), pytester.path / "a.onnx")
    save(classifier(seed=1), pytester.path / "b.onnx")
    # Log every write with the process that made it: workers have PYTEST_XDIST_WORKER set.
    pytester.makeconftest(
        """
        import os, pathlib
        from onnx2trt_check.pytest_plugin import baselines as baseline_checks
        LOG = pathlib.Path(__file__).parent / "writes.log"
        original = baseline_checks.store.write_baseline
        def logged(*args, **kwargs):
            with open(LOG, "a") as f:
                f.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + "\\n")
            return original(*args, **kwargs)
        baseline_checks.store.write_baseline = logged
        """
    )
    args = ("--model", "a.onnx", "--model", "b.onnx", *ONLY, "--baseline-dir", "bl", "-n", "2", "-rs")
    result = pytester.runpytest_subprocess(*args, "--baseline-update")
    result.assert_outcomes(passed=4)
    assert (pytester.path / "writes.log").read_text().split() == ["controller", "controller"]
    files = sorted((pytester.path / "bl").glob("*.json"))
    assert [p.name.split(".")[0] for p in files] == ["a", "b"]
    assert all(store.load_baseline(p).latency is None and "logits" in store.load_baseline(p).accuracy for p in files)


# ------------------------------------------------------------------------------- pure functions


@given(st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=1, max_size=40))
def test_latency_figures_are_the_sample_statistics_in_ms(seconds):
    figures = latency_figures(LatencySamples(tuple(seconds), warmup=3))
    data = np.asarray(seconds) * 1e3
    expected = {"median_ms": np.median(data), "mean_ms": np.mean(data), "p90_ms": np.percentile(data, 90), "p99_ms": np.percentile(data, 99), "min_ms": data.min(), "max_ms": data.max()}
    for key, value in expected.items():
        assert figures[key] == pytest.approx(value, rel=1e-9, abs=2e-6), key
    assert figures["stdev_ms"] == pytest.approx(np.std(data, ddof=1) if len(data) > 1 else 0.0, rel=1e-6, abs=2e-6)
    assert figures["rounds"] == len(seconds) and figures["warmup"] == 3 and figures["samples_ms"] == [round(s * 1e3, 6) for s in seconds]


def _part(**blocks) -> dict:
    env = {"cpu": "c"}
    return {"model_name": "m.onnx", "model_sha256": "new", "target": "ort", "build_options": {}, "environment": env} | blocks


def test_merge_replaces_measured_blocks_and_keeps_the_rest_of_the_same_model():
    old = store.Baseline("m.onnx", "new", "ort", {}, {"cpu": "c"}, {}, {"logits": {"max_abs": 1.0}, "gone": {"max_abs": 2.0}}, LatencySamples((0.5,), 1))
    accuracy_only = merged_baseline(old, [_part(accuracy={"logits": {"max_abs": 3.0}})], {"onnx": "1"})
    assert accuracy_only.accuracy == {"logits": {"max_abs": 3.0}} and accuracy_only.latency == old.latency
    assert accuracy_only.model_sha256 == "new" and accuracy_only.tool_versions == {"onnx": "1"}
    # gate13: a block measured on another model is not filed under this model's sha256
    other_model = dataclasses.replace(old, model_sha256="old")
    assert merged_baseline(other_model, [_part(accuracy={"logits": {"max_abs": 3.0}})], {}).latency is None
    latency_only = merged_baseline(old, [_part(latency={"data": [0.25, 0.5], "warmup": 2})], {})
    assert latency_only.accuracy == old.accuracy and latency_only.latency == LatencySamples((0.25, 0.5), 2)
    fresh = merged_baseline(None, [_part(latency={"data": [0.1], "warmup": 0})], {})
    assert fresh.accuracy == {} and fresh.latency == LatencySamples((0.1,), 0)


def test_decision_row_shows_baseline_current_and_ratio():
    accuracy = store.decide_accuracy("max_abs", 1e-6, 1e-3, output="logits")
    assert decision_row(accuracy.__dict__).startswith("logits.max_abs: baseline 1e-06, current 0.001, ratio 1e+03x [regression] (max_abs worse by")
    latency = store.Decision("latency", "median", 0.002, 0.001, 0.5, -0.001, "improvement", "faster")
    assert decision_row(latency.__dict__) == "latency median: baseline 2 ms, current 1 ms, ratio 0.5x [improvement] (faster)"


# ---------------------------------------------------------------------------------------- timing


def test_ort_runner_runs_the_feed_on_one_session(tmp_path):
    path = save(classifier(batch=1), tmp_path / "m.onnx")
    feed = {"x": np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)}
    call = timing.timed_runner(OrtTarget(), path, feed)
    np.testing.assert_array_equal(call()[0], run_model(path, [feed], optimized=True)[0]["logits"])


def test_a_target_without_a_timing_path_is_refused_with_a_reason():
    class Engine:
        name, engine = "trt-fp16", "tensorrt"

    with pytest.raises(timing.TimingNotImplemented, match=r"^timing not implemented for trt-fp16 \(engine tensorrt\)"):
        timing.timed_runner(Engine(), "m.onnx", {})

    class Own(Engine):
        def timed_runner(self, path, feed):
            return lambda: ("own", path)

    assert timing.timed_runner(Own(), "m.onnx", {})() == ("own", "m.onnx")
