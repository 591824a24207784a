"""The task metric (--labels / --metric) as the objective of `quantize`'s automatic calibration and of
`bisect --sensitivity`: the searches really maximize it, ties go to the output SQNR, misuse is exit 4."""

from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check import api
from onnx2trt_check.bisection.sensitivity import fp16_emulation, node_sensitivity
from onnx2trt_check.cli.main import main
from onnx2trt_check.quant.objective import TaskObjective, TaskScore, beats, score_key
from onnx2trt_check.runtime import run_model
from onnx2trt_check.task_metrics import TaskMetric, first_feeds_labels

MODELS = Path(__file__).resolve().parents[1] / "models"
CLASSIFIER = MODELS / "convbn_classifier"

# Two independent branches: ya = a * 1000, yb = b * 1000. With a = b = 100 both overflow fp16.
TWO_BRANCHES = """
<ir_version: 8, opset_import: ["" : 17]>
branches (float[1,1] a, float[1,1] b) => (float[1,1] ya, float[1,1] yb) {
  k = Constant <value = float[1] {1000.0}> ()
  ya = Mul (a, k)
  yb = Mul (b, k)
}
"""
METRICS = '''
import numpy as np

def a_finite(outputs, labels):
    """Rewards only branch a: its output finite."""
    return {"a_finite": float(np.isfinite(outputs["ya"]).all())}

def constant(outputs, labels):
    return {"same": 1.0}

def count_labels(outputs, labels):
    return {"rows": float(len(labels))}

def needs_labels(outputs, labels):
    return {"first": float(labels[0])}

def reward_error(outputs, labels):
    """Perverse on purpose: the further from the float logits (the labels), the better."""
    return {"error": float(np.mean(np.abs(np.asarray(outputs["logits"]).reshape(labels.shape) - labels)))}
'''


def two_branches(tmp_path) -> str:
    model = onnx.parser.parse_model(TWO_BRANCHES)
    for node, name in zip((n for n in model.graph.node if n.op_type == "Mul"), ("mul_a", "mul_b"), strict=True):
        node.name = name
    path = tmp_path / "branches.onnx"
    onnx.save(model, str(path))
    return str(path)


def feeds_file(tmp_path, a: float, b: float, count: int = 3) -> str:
    path = tmp_path / f"in_{a}_{b}.npz"
    np.savez(path, a=np.full((count, 1, 1), a, np.float32), b=np.full((count, 1, 1), b, np.float32))
    return str(path)


@pytest.fixture
def metrics(tmp_path) -> str:
    path = tmp_path / "my_metrics.py"
    path.write_text(METRICS)
    return str(path)


# ---------------------------------------------------------------- ordering of scores


scores = st.floats(-100, 100, allow_nan=False)


@given(scores, scores, st.floats(0, 1))
def test_plain_scores_need_the_minimum_gain(new, old, gain):
    assert beats(new, old, min_gain_db=gain) == (new > old + gain)
    assert score_key(new) == (new, 0.0)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(1, 50), scores, scores, st.floats(0, 1))
def test_a_task_score_rises_by_one_row_whatever_its_sqnr_and_ties_go_to_the_sqnr(right, right_old, rows, sqnr, sqnr_old, gain):
    new, old = TaskScore(right / rows, sqnr), TaskScore(right_old / rows, sqnr_old)
    if right != right_old:
        assert beats(new, old, min_gain_db=gain) == (right > right_old)  # a 1/rows rise counts, below any dB gain
    else:
        assert beats(new, old, min_gain_db=gain) == (sqnr > sqnr_old + gain)
    assert (score_key(new) > score_key(old)) == ((right / rows, sqnr) > (right_old / rows, sqnr_old))


@given(st.lists(st.integers(1, 4), min_size=1, max_size=6), st.data())
def test_first_feeds_labels_cut_at_the_rows_of_the_first_feeds(batches, data):
    feeds = [{"x": np.zeros((n, 2))} for n in batches]
    labels = np.arange(sum(batches))
    count = data.draw(st.integers(1, len(batches)))
    assert list(first_feeds_labels(labels, feeds, count)) == list(range(sum(batches[:count])))


# ---------------------------------------------------------------- bisect --sensitivity


def test_sensitivity_keeps_only_what_the_task_figure_needs(tmp_path, metrics, capsys):
    model, inputs = two_branches(tmp_path), feeds_file(tmp_path, 100.0, 100.0)
    base = ["bisect", model, "--target", "ort-fp16", "--sensitivity", "--lowering", "fp16_emulation", "--inputs", inputs]
    assert main(base) == 0
    assert "flags: --fp16-block mul_a --fp16-block mul_b\n" in capsys.readouterr().out  # output SQNR: both overflow
    assert main([*base, "--metric", f"{metrics}:a_finite"]) == 0
    out = capsys.readouterr().out
    assert "scored by a_finite of metric function" in out and "ties broken by output SQNR" in out
    assert "the a_finite >= 1 floor (fully lowered a_finite 0 -> a_finite 1)" in out
    assert "flags: --fp16-block mul_a\n" in out


def test_sensitivity_ranking_breaks_task_ties_by_output_sqnr(tmp_path):
    # a = 1.0001 rounds a little in fp16, b = 100 overflows: mul_b is the more sensitive node, though
    # graph order puts mul_a first and a constant metric ties every candidate.
    model = onnx.load(two_branches(tmp_path))
    feeds = [{"a": np.full((1, 1), 1.0001, np.float32), "b": np.full((1, 1), 100.0, np.float32)}]
    objective = TaskObjective(TaskMetric(None, lambda outputs, labels: {"same": 1.0}, "constant"))
    ranked = node_sensitivity(model, feeds, fp16_emulation, nodes=["mul_a", "mul_b"], objective=objective)
    assert [s.node for s in ranked] == ["mul_b", "mul_a"]
    assert [float(s.only_lowered_sqnr_db) for s in ranked] == [1.0, 1.0]


def test_sensitivity_labels_respect_max_feeds(tmp_path, metrics, capsys):
    model, inputs = two_branches(tmp_path), feeds_file(tmp_path, 100.0, 100.0, count=5)
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(5.0))
    args = ["bisect", model, "--target", "ort-fp16", "--sensitivity", "--inputs", inputs, "--labels", str(labels),
            "--metric", f"{metrics}:count_labels", "--max-feeds", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "on 2 feed(s), scored by rows of metric function" in out and "(float model 2, allowed drop 0)" in out
    np.save(labels, np.arange(3.0))  # 3 labels for 5 feeds: refused, though --max-feeds uses 2
    assert main(args) == 4
    assert "--labels holds 3 labels, the input data 5 feed(s)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--labels", "missing.npy", "--sensitivity"], "--labels 'missing.npy' does not exist"),
    (["--metric", "METRICS:constant"], "--labels/--metric score --sensitivity on the --inputs feeds"),
    (["--metric", "METRICS:constant", "--sensitivity", "--min-sqnr", "20"], "without --min-sqnr"),
    (["--max-metric-drop", "0.1", "--sensitivity"], "--max-metric-drop needs task figures"),
    (["--metric", "METRICS:needs_labels", "--sensitivity"], "without --labels it gets labels=None"),
])
def test_bisect_task_misuse_is_one_line_and_exit_4(tmp_path, metrics, capsys, extra, message):
    model, inputs = two_branches(tmp_path), feeds_file(tmp_path, 100.0, 100.0)
    extra = [a.replace("METRICS", metrics) for a in extra]
    assert main(["bisect", model, "--target", "ort-fp16", "--inputs", inputs, *extra]) == 4
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- quantize


@pytest.fixture
def classifier_subset(tmp_path):
    """40 labelled feeds and 32 calibration feeds of the sample classifier."""
    inputs, calib = tmp_path / "in.npz", tmp_path / "calib.npz"
    np.savez(inputs, input=np.load(f"{CLASSIFIER}.npz")["input"][:40])
    np.savez(calib, input=np.load(f"{CLASSIFIER}.calib.npz")["input"][:32])
    np.save(tmp_path / "labels.npy", np.load(f"{CLASSIFIER}.labels.npy")[:40])
    return str(inputs), str(calib), str(tmp_path / "labels.npy")


def test_auto_calibration_maximizes_the_metric_given(tmp_path, classifier_subset, metrics):
    inputs, calib, _ = classifier_subset
    model = onnx.load(f"{CLASSIFIER}.onnx")
    feeds = [{"input": x} for x in np.load(inputs)["input"]]
    logits = np.concatenate([o["logits"] for o in run_model(model, feeds)])
    np.save(tmp_path / "float_logits.npy", logits)
    default = api.quantize(f"{CLASSIFIER}.onnx", calibration_data=calib, inputs=inputs)
    perverse = api.quantize(f"{CLASSIFIER}.onnx", calibration_data=calib, inputs=inputs,
                            labels=tmp_path / "float_logits.npy", metric=f"{metrics}:reward_error")
    selection = perverse.build.report.selection
    assert selection["on_selection_feeds"] and selection["selection_feeds"] == 40 and selection["fit_feeds"] == 32
    assert "error of metric function" in selection["objective"]
    # Rewarded for error, the search drifts away from the float model: its int8 output is worse.
    assert perverse.accuracy["logits"]["sqnr_db"] < default.accuracy["logits"]["sqnr_db"] - 1.0
    error = perverse.verdict.task["int8"]["error"]
    assert selection["final_score"] == pytest.approx(error) and error >= max(selection["uniform_scores"].values())


def test_quantize_with_labels_end_to_end_on_a_sample_model(tmp_path, capsys):
    out_path = tmp_path / "q.onnx"
    args = ["quantize", f"{CLASSIFIER}.onnx", "-o", str(out_path), "--calibration-data", f"{CLASSIFIER}.calib.npz",
            "--inputs", f"{CLASSIFIER}.npz", "--labels", f"{CLASSIFIER}.labels.npy", "--metric", f"{MODELS / 'metrics.py'}:task_metric"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "chosen on the 360 labelled --inputs feed(s) by top1 of metric function" in out
    # The printed task figure of the written model, recomputed here from the file and the labels.
    feeds = [{"input": x} for x in np.load(f"{CLASSIFIER}.npz")["input"]]
    logits = np.concatenate([o["logits"] for o in run_model(onnx.load(str(out_path)), feeds, optimized=True)])
    top1 = float(np.mean(logits.argmax(axis=1) == np.load(f"{CLASSIFIER}.labels.npy")))
    assert f"int8 top1 {top1:.4g} (reference" in out


def test_quantize_with_labels_and_a_fixed_method_says_nothing_is_searched(tmp_path, classifier_subset, capsys):
    inputs, calib, labels = classifier_subset
    assert main(["quantize", f"{CLASSIFIER}.onnx", "-o", str(tmp_path / "q.onnx"), "--calibration-data", calib,
                 "--method", "max", "--inputs", inputs, "--labels", labels]) == 0
    out = capsys.readouterr().out
    assert "note: --calibration-method max searches nothing: the task figure only scores the result" in out
    assert "task figures (top-1/top-5 against 'labels.npy'): int8 top1" in out


@pytest.mark.parametrize("extra, message", [
    (["--labels", "missing.npy"], "--labels 'missing.npy' does not exist"),
    (["--labels", "SHORT"], "--labels holds 7 labels, the input data 40 feed(s)"),
    (["--metric", "METRICS:needs_labels"], "without --labels it gets labels=None: pass --labels FILE.npy"),
    (["--labels", "LABELS", "--no-inputs"], "--labels/--metric score the --inputs feeds"),
])
def test_quantize_task_misuse_is_one_line_and_exit_4(tmp_path, classifier_subset, metrics, capsys, extra, message):
    inputs, calib, labels = classifier_subset
    np.save(tmp_path / "short.npy", np.zeros(7, np.int64))
    extra = [a.replace("METRICS", metrics).replace("SHORT", str(tmp_path / "short.npy")).replace("LABELS", labels) for a in extra]
    with_inputs = [] if "--no-inputs" in extra else ["--inputs", inputs]
    extra = [a for a in extra if a != "--no-inputs"]
    assert main(["quantize", f"{CLASSIFIER}.onnx", "-o", str(tmp_path / "q.onnx"), "--calibration-data", calib, *with_inputs, *extra]) == 4
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q.onnx").exists()
