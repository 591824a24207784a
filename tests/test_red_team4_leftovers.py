"""Red team 4: what a run leaves behind when it ends, and when it is stopped.

Found with TMPDIR and HOME set to fresh empty folders, from an empty working folder:
* every run (pytest --model, check, optimize, quantize, bisect, qdq, the API) left `.ses` in
  $TMPDIR and a device id and an event database in ~/.cache/Microsoft/DeveloperTools/.onnxruntime:
  ONNX Runtime 1.32's telemetry, started by its import;
* SIGTERM (a CI timeout) on `pytest --model` or `onnx2trt-check check` left the run folder
  `onnx2trt_check-run-*` in $TMPDIR, and the TensorRT worker process running forever, holding the
  caller's stdout open (a `subprocess.run(capture_output=True)` of the run never returned);
  on `bisect` it left `onnx2trt_check-bisect-*`;
* Ctrl-C on a CLI command printed a KeyboardInterrupt traceback.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_models import classifier, save

CLI = [sys.executable, "-m", "onnx2trt_check.cli.main"]


@pytest.fixture
def user(tmp_path):
    """An empty working folder holding a model, and a fresh TMPDIR and HOME: (folder, env)."""
    folder, tmp, home = tmp_path / "work", tmp_path / "tmp", tmp_path / "home"
    for path in (folder, tmp, home):
        path.mkdir()
    save(classifier(batch=1), folder / "m.onnx")
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME") and not k.startswith("PYTEST_")}
    env.update(TMPDIR=str(tmp), HOME=str(home))
    return folder, env


def _left(env) -> list[str]:
    return sorted(p.name for p in Path(env["TMPDIR"]).iterdir())


def _processes_of(env) -> list[int]:
    """Live (not zombie) processes started with this TMPDIR."""
    marker = f"TMPDIR={env['TMPDIR']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0") and " Z " not in (entry / "stat").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _wait_for(condition, seconds: float = 60.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_no_run_leaves_onnxruntime_telemetry_files(user):
    folder, env = user
    subprocess.run([*CLI, "optimize", "m.onnx", "-o", "o.onnx"], cwd=folder, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", "import onnx2trt_check as o; o.optimize('m.onnx')"], cwd=folder, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--model=m.onnx", "--target=ort"], cwd=folder, env=env,
                   check=True, capture_output=True)
    assert _left(env) == []
    assert not (Path(env["HOME"]) / ".cache" / "Microsoft").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx", "o.onnx"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the run's processes through /proc")
def test_sigterm_mid_run_leaves_no_run_folder_and_no_process(user):
    folder, env = user
    log = folder.parent / "out.txt"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--model=m.onnx", "--target=ort", "--latency",
                                "--latency-rounds=2000000"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert _wait_for(lambda: "latency::latency[ort]" in log.read_text()), log.read_text()
        time.sleep(0.3)
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == pytest.ExitCode.INTERRUPTED, log.read_text()
    finally:
        run.kill()
    assert _left(env) == [], log.read_text()
    assert _wait_for(lambda: not _processes_of(env), 10), (_processes_of(env), log.read_text())
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the run's processes through /proc")
def test_a_killed_caller_takes_its_tensorrt_worker_along(user):
    folder, env = user
    script = "import os, time\nfrom onnx2trt_check.trt import isolated\nprint(isolated.call(os.getpid), flush=True)\ntime.sleep(120)\n"
    caller = subprocess.Popen([sys.executable, "-c", script], cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(caller.stdout.readline())
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
    finally:
        caller.kill()
    assert worker != caller.pid
    assert _wait_for(lambda: worker not in _processes_of(env), 10), "the worker outlived its caller"


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_command_says_one_line_and_removes_its_folder(user, stop, code):
    folder, env = user
    np.savez(folder / "in.npz", x=np.random.default_rng(0).random((30000, 1, 3, 8, 8), dtype=np.float32))
    # Ctrl-C's default action, whatever this test process inherited: an ignored SIGINT is inherited by
    # the command, which then rightly runs to the end (exit 0), as it did under the full suite.
    run = subprocess.Popen([*CLI, "bisect", "m.onnx", "--target", "ort-fp16", "--inputs", "in.npz", "--max-feeds", "30000", "--json", "b.json"],
                           cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert _wait_for(lambda: any(name.startswith("onnx2trt_check-bisect-") for name in _left(env)))
        run.send_signal(stop)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == code, (err, signal.getsignal(signal.SIGINT))
    assert "Traceback" not in err and err.strip().splitlines() == [err.strip().splitlines()[-1]]
    assert "onnx2trt-check: interrupted" in err
    assert _left(env) == [] and sorted(p.name for p in folder.iterdir()) == ["in.npz", "m.onnx"]
