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

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator


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


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """SIGINT/SIGTERM arriving in the block are recorded in the list it yields, not acted on (the
    caller acts when the block ends); a second one acts at once, as the previous handler would.
    For short work that must not be cut in two: renaming a set of files, the end-of-run summary
    (a Ctrl-C or SIGTERM there printed a traceback instead of the rest of the summary). Only the
    main thread may set handlers: elsewhere, nothing is held."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def hold(signum, _frame) -> None:
        caught.append(signum)
        if len(caught) > 1:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)

    for signum in signums:
        signal.signal(signum, hold)
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def temporary_folder(prefix: str) -> Iterator[str]:
    """tempfile.TemporaryDirectory, made with SIGINT/SIGTERM held: a Ctrl-C landing between its
    mkdir and the registration of its removal (a process descheduled there under load) left the
    folder in the temporary folder (CI: `bisect` stopped by Ctrl-C left onnx2trt_check-bisect-*).
    A signal held there acts once the removal is in place."""
    with signals_held() as caught:
        folder = tempfile.TemporaryDirectory(prefix=prefix)
    with folder as name:
        if caught:
            signal.raise_signal(caught[0])
        yield name


def exit_with_parent() -> None:
    """In a worker process: exit when the process that started it is gone (killed with SIGKILL, or
    out of memory), instead of waiting for work forever; SIGTERM ends it at once, and so does SIGINT,
    quietly (a Ctrl-C reaches the whole process group: the worker's KeyboardInterrupt printed a
    20-line traceback into the interrupted run's output, redteam14); its caller reports the stop."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
