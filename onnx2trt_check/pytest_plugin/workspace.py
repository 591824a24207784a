"""Where a `pytest --model` run writes besides what the user asked for: nowhere in the working folder
and nowhere beside the models.

* pytest's cache (what `--lf` and `--ff` read) goes to the user's cache folder,
  `$XDG_CACHE_HOME/onnx2trt_check/pytest-cache/<hash of the rootdir>` (`~/.cache` when the variable is
  unset), one per rootdir as pytest keeps one per rootdir; a `cache_dir` the user configured is kept.
  Without this the cache lands in the rootdir, which pytest makes the models' folder when the model
  path is a separate argument (`--model models/x.onnx`), or in the working folder.
* pytest-benchmark's storage: its plugin creates `.benchmarks` in the working folder when it is
  configured, in every pytest run (we use only its statistics). It is pointed into the run's
  temporary folder, unless the user gave `--benchmark-storage` or an option that saves or compares.
* Derived models (fp16/int8 artifacts, transformed models) are written into the run's temporary
  folder, which is removed when the run ends (each xdist worker removes its own); `--artifact-dir`
  keeps them. An xdist worker's folder lies inside the controller's, which the controller removes
  too: a worker that dies (a segfault in a runtime, an OOM kill) removes nothing itself, and left
  its folder in the temporary folder.

Both redirections must happen before the cache and benchmark plugins are configured, so the plugin's
pytest_configure runs first (tryfirst). Standard library and pytest only: imported by every
`--model` run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

BENCHMARK_DEFAULT_STORAGE = "file://./.benchmarks"
# pytest-benchmark options that read or write its storage: with any of them the user asked for it.
BENCHMARK_STORAGE_USERS = ("benchmark_save", "benchmark_autosave", "benchmark_compare")


def user_cache_folder() -> Path:
    """$XDG_CACHE_HOME/onnx2trt_check, else ~/.cache/onnx2trt_check."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnx2trt_check"


def pytest_cache_folder(rootdir: Path) -> Path:
    key = hashlib.sha256(str(rootdir).encode()).hexdigest()[:16]
    return user_cache_folder() / "pytest-cache" / key


def redirect_pytest_cache(config) -> None:
    """Point pytest's cache at the user's cache folder unless `cache_dir` was configured. pytest has
    no public setter for an ini value; its cache plugin reads `cache_dir` once, through getini's
    cache, when it is configured (after this)."""
    if not config.pluginmanager.has_plugin("cacheprovider") or config.getini("cache_dir") != ".pytest_cache":
        return
    config._inicache["cache_dir"] = str(pytest_cache_folder(config.rootpath))


def redirect_benchmark_storage(config, run_folder: Path) -> None:
    """Keep pytest-benchmark's `.benchmarks` out of the working folder unless the user uses it."""
    storage = _option(config, "benchmark_storage")
    if storage != BENCHMARK_DEFAULT_STORAGE or any(_option(config, name) for name in BENCHMARK_STORAGE_USERS):
        return
    config.option.benchmark_storage = f"file://{run_folder / 'benchmarks'}"


def redirect_basetemp(config, run_folder: Path) -> None:
    """pytest's base temporary folder inside the run folder unless --basetemp was given: xdist's
    controller makes it for its workers in every `-n` run, and pytest keeps it
    (`$TMPDIR/pytest-of-<user>/pytest-N`), one folder left behind per run. Before pytest's tmpdir
    plugin reads the option (plugin.py's configure runs first)."""
    if config.option.basetemp is None:
        config.option.basetemp = str(run_folder / "basetemp")


def check_basetemp(config, run_folder: Path, kept: list[tuple[str, object]]) -> None:
    """A --basetemp of the user's is emptied by pytest at the start of the run (by xdist's controller
    in every -n run): `--basetemp models -n 2` deleted the models and their data, "no tests ran"
    (redteam19). Refused when it holds the working folder or a file the run reads or keeps (`kept`:
    (what, path) pairs)."""
    from ..errors import ConfigError
    from ..validate import resolved

    given = config.option.basetemp
    if not given or resolved(given, "--basetemp").is_relative_to(run_folder.resolve()):
        return
    folder = resolved(given, "--basetemp")
    for what, path in [("the working folder", Path.cwd()), *kept]:
        if path and any(p == folder or p.is_relative_to(folder) for p in (Path(os.path.abspath(path)), resolved(path, what))):
            raise ConfigError(f"--basetemp '{given}' holds {what} '{path}', and pytest empties the --basetemp folder when a run "
                              "starts; pass a folder of its own, or leave --basetemp out (the run's temporary folder is used)")


def _option(config, name: str):
    return getattr(config.option, name, None)  # absent when pytest-benchmark is not loaded


# The key of xdist's workerinput that hands a worker the controller's run folder.
WORKER_PARENT = "onnx2trt_check_run_folder"


def make_run_folder(config) -> Path:
    """A fresh folder in the temporary folder, or inside the controller's run folder for an xdist worker."""
    parent = getattr(config, "workerinput", {}).get(WORKER_PARENT)
    return Path(tempfile.mkdtemp(prefix="onnx2trt_check-run-", dir=parent if parent and os.path.isdir(parent) else None))


class RunFolder:
    """The run's temporary folder, removed at the end of the run (a plugin object: pluggy keeps
    plugins in sets, so it hashes by identity)."""

    def __init__(self, path: Path):
        self.path = path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        """Removed here, once every item has run: an xdist worker reports that it finished after its
        session-finish hooks, and the controller may end the worker's process before the worker's
        unconfigure hooks have run (it left one folder per worker now and then)."""
        self.remove()

    def pytest_unconfigure(self, config) -> None:
        self.remove()  # a run that never started a session (configure failed)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist there is no such hook
    def pytest_configure_node(self, node) -> None:
        """The controller hands each worker its run folder, to make the worker's inside (make_run_folder)."""
        node.workerinput[WORKER_PARENT] = str(self.path)
