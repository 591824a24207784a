"""redteam14: a Ctrl-C in the terminal reaches the whole process group, the TensorRT worker
(trt/isolated.py) too: it printed a 20-line `Process ForkProcess-1: Traceback ... KeyboardInterrupt`
into the interrupted run's output (seen in `pytest --model m.onnx -n 2`). The worker now ends on
SIGINT quietly, as on SIGTERM; its caller reports the interrupt."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, time
    from onnx2trt_check.trt import isolated
    worker = isolated.call(os.getpid)
    assert worker != os.getpid()
    os.kill(worker, signal.SIGINT)
    for _ in range(100):  # the worker is gone (or a zombie) once the signal killed it
        try:
            with open(f"/proc/{worker}/stat") as stat:
                if stat.read().split(") ")[1].startswith("Z"):
                    break
        except OSError:  # reaped already
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the worker outlived SIGINT")
    print("done")
    """)


def test_the_trt_worker_ends_quietly_on_ctrl_c():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "done" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
