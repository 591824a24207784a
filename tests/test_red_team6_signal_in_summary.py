"""Red team 6: a Ctrl-C or SIGTERM while `pytest --model` (with or without -n 2) wrote its final
summary raised KeyboardInterrupt out of the terminal summary: a traceback where the rest of the
summary should be, exit 1 (SIGTERM) or -2 (Ctrl-C). The end of the run is now held whole
(session.FinishHeld), and the run exits 2, interrupted, saying so."""

import pytest
from tiny_models import classifier, save

CONFTEST = """
import os, signal, time
def pytest_terminal_summary(terminalreporter):
    os.kill(os.getpid(), signal.{name})
    time.sleep(0.2)  # the signal arrives here, inside the summary
"""


@pytest.mark.parametrize(("name", "workers"), [("SIGTERM", []), ("SIGINT", []), ("SIGTERM", ["-n", "2"])])
def test_a_signal_in_the_summary_lets_it_finish_and_exits_2(pytester, tmp_path, name, workers):
    model = save(classifier(), tmp_path / "m.onnx")
    pytester.makeconftest(CONFTEST.format(name=name))
    result = pytester.runpytest_subprocess("--model", str(model), "--target", "ort", "-p", "no:cacheprovider", *workers)
    output = result.stdout.str() + "\n".join(result.errlines)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert "onnx2trt_check summary" in output and "target[ort]" in output  # the summary is whole
    assert f"{'SIGTERM' if name == 'SIGTERM' else 'Ctrl-C (SIGINT)'} during the summary" in output
    assert result.ret == 2
