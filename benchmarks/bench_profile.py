"""Where the time of `pytest --model M` goes: per item, split by kind of work, and the phases around
the items (startup, collection, the end of the run).

One run per model in a fresh process, with a small pytest plugin that times a few entry points of
the libraries we call. Time is charged to the innermost timed call (a session created inside the
fp16 conversion is `session`, the rest of the conversion `convert`), so the kinds add up to the
item's time without overlap:

  session    onnxruntime InferenceSession creation (graph load, optimization, weight hand-over)
  run        InferenceSession.run
  shapes     onnx.shape_inference (also inside onnx-ir's ShapeInferencePass)
  checker    onnx.checker.check_model
  serialize  protobuf SerializeToString / ParseFromString / CopyFrom, onnx.load / onnx.save, our
             fileio.save_model (file writes)
  convert    onnx <-> onnx-ir (from_proto / to_proto), proto <-> numpy, ORT's fp16 converter
  tools      onnxsim.simplify and onnxoptimizer.optimize (their C++ work)
  import     imports done while an item runs (a library imported on first use)
  other      the rest: our own Python (transforms, comparisons, statistics)

Each item's peak resident memory is measured too (VmHWM, reset before the item by writing 5 to
/proc/self/clear_refs), beside the resident memory when it started.

The phases: `python+pytest` (interpreter start to pytest's configure, which includes importing
pytest and every installed pytest plugin), `our imports` (importing the library in the plugin's
configure), `load` (the rest of configure: options, models read, feeds made), `collect`, the items,
`end` (from the last item to the end of pytest.main: summaries, report, temporary folder removed)
and `exit` (interpreter shutdown). The packages first imported in `end` are listed: there, a
plugin's terminal summary that imports its library is paid by every run (hypothesis's imports all
of hypothesis; with PYTHONDONTWRITEBYTECODE=1, pytest then rewrites its asserts anew each run). The wall time is the parent's, around the whole process.

Usage: python benchmarks/bench_profile.py [--skip-large] [--only NAME] [--top N] [pytest args ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("session", "run", "shapes", "checker", "serialize", "convert", "tools", "import", "other")
PHASES = ("python+pytest", "our imports", "load", "collect", "items", "end", "exit")

# Runs in a fresh process: pytest in-process with the timing plugin; prints one JSON line.
CHILD = r'''
import builtins, importlib.abc, importlib.machinery, json, sys, time
started, started_epoch = time.perf_counter(), time.time()
marks = {}
stack = []  # [kind, resumed at]
spent = {}

def enter(kind):
    now = time.perf_counter()
    if stack:
        spent[stack[-1][0]] = spent.get(stack[-1][0], 0.0) + now - stack[-1][1]
    stack.append([kind, now])

def leave():
    now = time.perf_counter()
    kind, resumed = stack.pop()
    spent[kind] = spent.get(kind, 0.0) + now - resumed
    if stack:
        stack[-1][1] = now

def timed(kind, function):
    if getattr(function, "_timed", False):
        return function
    def wrapper(*args, **kwargs):
        enter(kind)
        try:
            return function(*args, **kwargs)
        finally:
            leave()
    wrapper._timed = True
    wrapper.__wrapped__ = function
    return wrapper

def patch(owner, name, kind):
    function = getattr(owner, name, None)
    if function is not None:
        setattr(owner, name, timed(kind, function))

ENTRY_POINTS = (
    ("onnxruntime.capi.onnxruntime_inference_collection", "InferenceSession", ("__init__",), "session"),
    ("onnxruntime.capi.onnxruntime_inference_collection", "InferenceSession", ("run",), "run"),
    ("onnx.shape_inference", None, ("infer_shapes", "infer_shapes_path"), "shapes"),
    ("onnx.checker", None, ("check_model",), "checker"),
    ("onnx", "ModelProto", ("SerializeToString", "ParseFromString", "CopyFrom"), "serialize"),
    ("onnx", "TensorProto", ("SerializeToString", "ParseFromString", "CopyFrom"), "serialize"),
    ("onnx", None, ("load", "load_model", "save", "save_model", "load_model_from_string"), "serialize"),
    ("onnx2trt_check.fileio", None, ("save_model",), "serialize"),
    ("onnx_ir", None, ("from_proto", "to_proto"), "convert"),
    ("onnx_ir.serde", None, ("from_proto", "to_proto", "serialize_model", "deserialize_model"), "convert"),
    ("onnx.numpy_helper", None, ("to_array", "from_array"), "convert"),
    ("onnxruntime.transformers.float16", None, ("convert_float_to_float16",), "convert"),
    ("onnxsim", None, ("simplify",), "tools"),
    ("onnxoptimizer", None, ("optimize",), "tools"),
)

def patch_loaded():
    """Time the entry points of the modules loaded so far (each once)."""
    for module_name, owner_name, names, kind in ENTRY_POINTS:
        module = sys.modules.get(module_name)
        owner = getattr(module, owner_name, None) if owner_name else module
        for name in names if owner is not None else ():
            patch(owner, name, kind)

real_import = builtins.__import__
def timed_import(name, *args, **kwargs):
    if not stack or name in sys.modules:
        return real_import(name, *args, **kwargs)
    enter("import")
    try:
        return real_import(name, *args, **kwargs)
    finally:
        leave()
builtins.__import__ = timed_import

class Watch(importlib.abc.MetaPathFinder):
    """Times the import of our session module: the library's imports, paid in configure."""
    def find_spec(self, name, path, target=None):
        if name != "onnx2trt_check.pytest_plugin.session":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        execute = spec.loader.exec_module
        def exec_module(module):
            begun = time.perf_counter()
            try:
                execute(module)
            finally:
                marks["our imports"] = time.perf_counter() - begun
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Watch())

import pytest
rows = []
loaded = []  # the modules loaded when the last item ended

def memory():
    """Resident memory now (MB), after resetting the peak (Linux: VmHWM := VmRSS)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass  # deliberate: without clear_refs (not Linux, no permission) the peak is the process's so far
    return status("VmRSS")

def status(field):
    with open("/proc/self/status") as text:
        return int(text.read().split(field + ":")[1].split()[0]) / 1024

class Profile:
    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config):  # right before configure (a historic hook: no wrapper)
        marks["configure"] = time.perf_counter()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session):  # right after configure
        marks["configured"] = time.perf_counter()

    def pytest_collection_finish(self, session):
        marks["collected"] = time.perf_counter()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        rss = memory()
        patch_loaded()
        marks.setdefault("first", time.perf_counter())
        spent.clear()
        begun = time.perf_counter()
        enter("other")
        try:
            return (yield)
        finally:
            leave()
            rss = (rss, status("VmHWM"))
            patch_loaded()  # modules the item imported: timed from the next item on
            rows.append((item.nodeid.split("::", 1)[-1], time.perf_counter() - begun, dict(spent), rss))
            marks["last"] = time.perf_counter()
            loaded[:] = [set(sys.modules)]

code = pytest.main(sys.argv[1:], plugins=[Profile()])
ended = time.perf_counter()
first, last = marks.get("first", ended), marks.get("last", ended)
phases = {
    "python+pytest": marks["configure"] - started,  # the interpreter's own start is added by the parent
    "our imports": marks.get("our imports", 0.0),
    "load": marks["configured"] - marks["configure"] - marks.get("our imports", 0.0),
    "collect": first - marks["configured"],
    "items": last - first,
    "end": ended - last,
}
late = {}  # top-level package: modules first imported after the last item
for name in set(sys.modules) - (loaded[0] if loaded else set(sys.modules)):
    late[name.split(".")[0]] = late.get(name.split(".")[0], 0) + 1
print("JSON" + json.dumps({"rows": rows, "phases": phases, "late_imports": late, "exit": int(code), "child": ended - started, "epoch": started_epoch,
                          "peak": status("VmHWM")}), flush=True)
'''


def profile(model: Path, pytest_args: list[str], cwd: Path) -> dict:
    """One fresh process checking `model`: its rows and phases, and the parent's wall time."""
    args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--model", str(model), *pytest_args]
    begun, begun_epoch = time.perf_counter(), time.time()
    result = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - begun
    line = next((x for x in result.stdout.splitlines() if x.startswith("JSON")), None)
    if line is None:
        raise SystemExit(f"profiling {model.name} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    data = json.loads(line[4:])
    data["wall"] = wall
    # What the child did not see: the interpreter's start before its first line, and its shutdown.
    interpreter = max(data["epoch"] - begun_epoch, 0.0)
    data["phases"]["python+pytest"] += interpreter
    data["phases"]["exit"] = max(wall - data["child"] - interpreter, 0.0)
    return data


def item_kind(item: str) -> str:
    """The family of an item id (`target[ort]::accuracy` -> `target[ort]`)."""
    return item.split("::")[0]


def print_profile(name: str, data: dict, top: int) -> None:
    rows = sorted(data["rows"], key=lambda r: -r[1])
    phases = data["phases"]
    print(f"\n{name}: {data['wall']:.2f} s wall, exit code {data['exit']}")
    print("  phases: " + ", ".join(f"{p} {phases.get(p, 0.0):.2f}" for p in PHASES))
    late = sorted(data.get("late_imports", {}).items(), key=lambda kv: -kv[1])
    print("  imported after the last item: " + (", ".join(f"{name} ({count} modules)" for name, count in late) or "nothing"))
    print(f"  {'item':<50}{'total':>7}" + "".join(f"{k:>10}" for k in KINDS) + f"{'MB start':>10}{'peak':>7}")
    sums = dict.fromkeys(KINDS, 0.0)
    for rank, (item, total, found, (start_mb, peak_mb)) in enumerate(rows):
        found = dict(found)
        found["other"] = found.get("other", 0.0)
        for kind in KINDS:
            sums[kind] += found.get(kind, 0.0)
        if rank < top:
            print(f"  {item[:49]:<50}{total:>7.3f}" + "".join(f"{found.get(k, 0.0):>10.3f}" for k in KINDS) + f"{start_mb:>10.0f}{peak_mb:>7.0f}")
    items_total = sum(r[1] for r in rows)
    print(f"  {'all items':<50}{items_total:>7.3f}" + "".join(f"{sums[k]:>10.3f}" for k in KINDS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--only", help="profile only the model whose file name contains this text")
    parser.add_argument("--top", type=int, default=12, help="items listed per model (the slowest). Defaults to 12")
    parser.add_argument("--json", type=Path, help="also write every model's figures to this JSON file")
    args, pytest_args = parser.parse_known_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_profile-") as tmp:
        cwd = Path(tmp)
        # Copies, so pytest's rootdir is a temporary folder, as in a user's project.
        models = [Path(shutil.copy(m, cwd)) for m in sorted((ROOT / "models").glob("*.onnx"))]
        if not args.skip_large:
            sys.path.insert(0, str(Path(__file__).parent))
            import onnx
            from synthetic import resnet50_like

            large = cwd / "resnet50_like.onnx"
            onnx.save(resnet50_like(size=224), str(large))
            models.append(large)
        models = [m for m in models if args.only is None or args.only in m.name]
        started = time.perf_counter()
        for model in models:
            results[model.name] = profile(model, pytest_args, cwd)
            print_profile(model.name, results[model.name], args.top)
    print(f"\nmeasured in {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
