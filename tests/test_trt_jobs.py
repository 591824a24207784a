"""TensorRT calls queued ahead of their items (isolated.submit, pytest_plugin/trt_jobs.py): a crash
is still the crashing call's own, each call is made once, and the verdicts are those of a run that
makes every call in its item."""

from __future__ import annotations

import json
import os
import time

import onnx
import pytest
from qdq_rule_models import CASES, model
from tiny_models import classifier, save

from onnx2trt_check.trt import isolated


def _square(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def _crash() -> None:
    os._exit(7)  # the worker dies as it does in a TensorRT segfault


@pytest.fixture(autouse=True)
def fresh_worker():
    isolated.shutdown()
    yield
    isolated.shutdown()


@pytest.mark.parametrize("asked_first", ["crashed", "queued"])
def test_a_call_queued_behind_a_crash_runs_again_in_a_new_worker(asked_first):
    crashing, queued = isolated.submit(_crash), isolated.submit(_square, 3)
    if asked_first == "queued":
        assert queued.result()[0] == 9
    with pytest.raises(isolated.TrtCrashed, match="_crash crashed its process"):
        crashing.result()
    value, pid = queued.result()
    assert value == 9 and pid != os.getpid()


def test_a_crash_after_a_finished_call_is_its_own():
    finished = isolated.submit(_square, 2)
    crashing = isolated.submit(_crash)
    with pytest.raises(isolated.TrtCrashed):
        crashing.result()
    assert finished.result()[0] == 4


def test_a_call_submitted_after_an_unclaimed_crash_gets_a_new_worker():
    crashing = isolated.submit(_crash)
    deadline = time.monotonic() + 60
    while not crashing.future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    later = isolated.submit(_square, 5)
    assert later.result()[0] == 25
    with pytest.raises(isolated.TrtCrashed):
        crashing.result()


def test_a_result_asked_again_is_the_same_answer_without_a_second_call():
    crashing = isolated.submit(_crash)
    errors = []
    for _ in range(2):
        with pytest.raises(isolated.TrtCrashed) as caught:
            crashing.result()
        errors.append(caught.value)
    assert errors[0] is errors[1]


# --- in a `pytest --model` run ----------------------------------------------------------------------

# Prints each call queued on the worker and the test phase it was queued in.
RECORDER = """
import os
from onnx2trt_check.trt import isolated

_submit = isolated.submit

def submit(function, *args, **kwargs):
    current = os.environ.get("PYTEST_CURRENT_TEST", "").split("::", 1)[-1]
    print(f"QUEUED {function.__name__} {os.path.basename(str(args[0]))} IN {current}")
    return _submit(function, *args, **kwargs)

isolated.submit = submit
"""
NO_EARLY = ("--latency", "--latency-rounds", "1", "--latency-warmup", "0")


def queued(result) -> list[str]:
    return [line.split("QUEUED ", 1)[1] for line in result.stdout.lines if "QUEUED " in line]


def test_the_parse_and_builds_are_queued_once_before_their_items(rtx, pytester):
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(RECORDER)
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "--model", "m.onnx")
    assert result.ret == 0, result.stdout.str()[-3000:]
    calls = queued(result)
    assert calls[:2] == ["parse_model m.onnx IN structure::checker (setup)", "build_engine m.onnx IN structure::checker (setup)"], calls
    assert len(calls) == 3 and calls[2].startswith("build_engine m.fp16.onnx IN ") and calls[2].endswith("(setup)"), calls
    assert "trt::build[fp16]" not in calls[2]  # queued as soon as target[ort-fp16] made the artifact


SMALL_LIMIT = "from onnx2trt_check.pytest_plugin import trt_jobs\ntrt_jobs.EARLY_LIMIT_BYTES = 100\n"


@pytest.mark.parametrize(("why", "conftest", "args"), [("--latency", "", NO_EARLY), ("a model above the limit", SMALL_LIMIT, ())],
                         ids=["latency", "above-the-limit"])
def test_each_call_waits_for_its_item(rtx, pytester, why, conftest, args):
    """With --latency (a build beside the timed runs would disturb them) and for a model above
    EARLY_LIMIT_BYTES of weights (its build memory would add to this process's peak); the
    classifier's weights are about 3 kB, above the limit of 100 bytes set here."""
    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(RECORDER + conftest)
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "--model", "m.onnx", *args)
    assert queued(result) == ["parse_model m.onnx IN structure::trt_ops (call)", "build_engine m.onnx IN trt::build[fp32] (call)",
                              "build_engine m.fp16.onnx IN trt::build[fp16] (call)"], why


def _verdicts(path) -> dict:
    """Outcome, message and the figures that do not time anything, per item (latency items left out)."""
    timed = {"build_seconds", "parse_seconds", "seconds", "summary", "reference_seconds"}
    checks = {}
    for model_entry in json.loads(path.read_text())["models"].values():
        for family, entry in model_entry["families"].items():
            for name, check in entry["checks"].items():
                if name != "latency":
                    figures = {k: v for k, v in check["figures"].items() if k not in timed} if family.startswith("trt") else None
                    checks[f"{family}::{name}"] = (check["outcome"], check["message"], figures)
    return checks


def test_a_crash_in_a_queued_build_fails_its_own_item_as_without_queueing(rtx, pytester):
    """TensorRT-RTX 1.7.1.116 segfaults building this Q/DQ model (tests/qdq_rule_models.py). Its
    fp32 build (the model's own Q/DQ: the int8 item's file too) crashes the worker with the fp16
    build queued or to come; every item must end as in a run that makes each call in its item."""
    crashing = next(text for name, _, text in CASES if name == "QDQ002 scale computed from the data")
    onnx.save(model(crashing), pytester.path / "q.onnx")
    early = pytester.runpytest_subprocess("-p", "no:randomly", "--model", "q.onnx", "--report-json", "early.json")
    late = pytester.runpytest_subprocess("-p", "no:randomly", "--model", "q.onnx", "--report-json", "late.json", *NO_EARLY)
    assert "INTERNALERROR" not in early.stdout.str() + late.stdout.str()
    verdicts = _verdicts(pytester.path / "early.json")
    assert verdicts == _verdicts(pytester.path / "late.json")
    assert "crashed while parsing or building it" in verdicts["trt[fp32]::build"][1]
