"""Nothing left behind by a run that is stopped, nor by the ONNX Runtime it imports.

SIGTERM (a CI job's timeout, `kill`, a container stop) ends a Python process at once by default: no
`finally`, no `with tempfile.TemporaryDirectory()`, no atexit handler runs. A stopped
`pytest --model` left its run folder (derived models, benchmark storage) in $TMPDIR, `bisect` its
work folder, and the TensorRT worker (trt/isolated.py) waited for work forever, an orphan holding
the caller's stdout and stderr open: a CI step reading them never ended. The faces turn SIGTERM
into KeyboardInterrupt, as Ctrl-C is: pytest reports the run interrupted (exit 2) and its cleanup
runs; the CLI prints one line and exits 128 + the signal's number.

ONNX Runtime 1.32 on Linux starts Microsoft's 1DS telemetry when imported: it leaves `.ses` in
$TMPDIR and `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` (a device id, an event database) on
every run. Its documented opt-out, ORT_DISABLE_TELEMETRY=1 set before the import, is set by the
faces unless the user set the variable (ORT_DISABLE_TELEMETRY=0 keeps ONNX Runtime's default).

Standard library only: the pytest plugin's entry point imports it.
"""

from __future__ import annotations

import os
import signal
import threading


def quiet_onnxruntime() -> None:
    """ONNX Runtime's telemetry off for this process and its children, unless the user chose."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def stop_on_sigterm():
    """SIGTERM raises KeyboardInterrupt in the main thread from now on, when nobody else handles
    it (the default action); returns a function that restores the previous handler."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _interrupt)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL) if signal.getsignal(signal.SIGTERM) is _interrupt else None


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwinding like Ctrl-C so every cleanup runs."""


def _interrupt(signum, frame) -> None:
    raise Terminated(f"stopped by signal {signum} (SIGTERM)")


def exit_with_parent() -> None:
    """In a worker process: exit when the process that started it is gone (killed with SIGKILL, or
    out of memory), instead of waiting for work forever; SIGTERM ends it at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
