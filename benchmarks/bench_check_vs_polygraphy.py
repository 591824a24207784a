"""Wall time, CPU time and peak memory of `pytest --model M` beside `polygraphy run M --onnxrt --onnxrt`.

For each sample model in models/ and a generated ResNet-50-sized model (about 100 MB of weights),
three commands run as fresh processes, alternating, `--repeats` times each, and their medians are
printed with the ratios measured in the same run:

  full        pytest --model M                      every default check (the run as a user gets it)
  ort         pytest --model M --target ort -k "structure or reference or target"
                                                    the checks issue 2 compared with Polygraphy
  polygraphy  polygraphy run M --onnxrt --onnxrt    two ONNX Runtime sessions, one feed each

CPU time (user + system of the child) is printed beside the wall time: on a shared, loaded machine
it moves less than the wall time (ONNX Runtime's threads make it exceed the wall time on an idle
one). Peak memory is the child's own VmHWM, read from /proc at its exit (a forked child's ru_maxrss
would include the benchmark's own memory at fork time). `pytest alone` is a one-test pytest run
without --model in the same environment: what pytest and its installed plugins cost any run.
`polygraphy x4` runs Polygraphy on as many feeds as our checks use (4): the same work per graph.
With `--before DIR` (a source tree holding another version's onnx2trt_check package, e.g.
`git archive main onnx2trt_check | tar -x -C DIR`), the full, ort and full cached runs of that
version alternate with the others, for before/after figures measured in the same run.

`full cached` is the full run with Python's bytecode cache usable (PYTHONDONTWRITEBYTECODE unset,
PYTHONPYCACHEPREFIX a folder of this run's, warmed by one untimed run): what an installed package
costs. Where PYTHONDONTWRITEBYTECODE=1 is set (as on the machine these figures were first taken
on), every run compiles our package from source and pytest re-rewrites the asserts of every
module of each pytest11 plugin's distribution it imports; hypothesis's plugin imports all of
hypothesis in its terminal summary, after the last item (0.2 s even with the cache). `pytest alone`
is printed both ways, and without hypothesis's plugin (`-p no:hypothesispytest`); `full cached` is
printed without that plugin too (`full_cached_no_hypothesis`): hypothesis comes with our `test`
extra, so `pip install onnx2trt_check` alone does not have it.

Goals (issue 18): the full run on the large model <= 4x Polygraphy's time, the `ort` run <= 1.5x,
a sample model's full run <= 1.5 s wall, and the large model's peak memory within 3x the model plus
the two ONNX Runtime sessions of a run (reference and ort, measured in a process that holds just them).

Usage: python benchmarks/bench_check_vs_polygraphy.py [--repeats 3] [--skip-large] [--skip-samples] [--only NAME] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import resnet50_like  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTEST = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q"]
JOBS = {
    "full": lambda m: ("pytest", [*PYTEST, "--model", str(m)]),
    "ort": lambda m: ("pytest", [*PYTEST, "--target", "ort", "-k", "structure or reference or target", "--model", str(m)]),
    "polygraphy": lambda m: ("polygraphy", ["run", str(m), "--onnxrt", "--onnxrt"]),
    "full_cached": lambda m: ("pytest", [*PYTEST, "--model", str(m)]),  # measured with the bytecode cache
    # The same without hypothesis's pytest plugin: an install without our `test` extra has no hypothesis.
    "full_cached_no_hypothesis": lambda m: ("pytest", ["-p", "no:hypothesispytest", *PYTEST, "--model", str(m)]),
}
FEEDS = 4  # our default --num-feeds
GOALS = {"full": 4.0, "ort": 1.5}
SAMPLE_GOAL_SECONDS = 1.5
# Runs one job in this fresh process and writes its peak resident memory (VmHWM, kB) to argv[1].
PEAK = """
import atexit, sys
peak_file = sys.argv[1]
def report():
    status = open("/proc/self/status").read()
    open(peak_file, "w").write(status.split("VmHWM:")[1].split()[0])
atexit.register(report)
job, args = sys.argv[2], sys.argv[3:]
if job == "pytest":
    import pytest
    sys.exit(pytest.main(args))
if job == "polygraphy":
    from polygraphy.tools._main import main
    sys.argv = ["polygraphy", *args]
    sys.exit(main())
import onnxruntime as ort  # job == "sessions": just the two ONNX Runtime sessions our run holds
sessions = []
for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    sessions.append(ort.InferenceSession(args[0], options, providers=["CPUExecutionProvider"]))
"""


def measure(job: str, args: list[str], cwd: Path, source: Path | None = None, cached: bool = False) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one fresh process running `job`, with the
    onnx2trt_check package of `source` first on the path when given, and with a usable bytecode
    cache (in `cwd`) when `cached`."""
    env = dict(os.environ) | ({"PYTHONPATH": str(source)} if source else {})
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cwd / "pycache")
    peak_file = cwd / "peak.txt"
    peak_file.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK, str(peak_file), job, *args], cwd=cwd, capture_output=True, env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{job} {' '.join(args)} failed:\n{result.stdout.decode()[-2000:]}{result.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, int(peak_file.read_text()) / 1024


def pytest_alone(cwd: Path, repeats: int) -> dict[str, float]:
    """Median wall times of a one-test pytest run without --model (pytest and its plugins): as the
    environment is, with the bytecode cache, and without hypothesis's plugin."""
    folder = cwd / "plain"
    folder.mkdir(exist_ok=True)
    (folder / "test_one.py").write_text("def test_one():\n    pass\n")
    args = [*PYTEST, str(folder / "test_one.py")]
    variants = {"as is": (args, False), "cached": (args, True), "no hypothesis plugin": (["-p", "no:hypothesispytest", *args], False)}
    measure("pytest", args, cwd, cached=True)  # warms the cache
    samples = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (arguments, cached) in variants.items():
            samples[name].append(measure("pytest", arguments, cwd, cached=cached)[0])
    return {name: statistics.median(values) for name, values in samples.items()}


def compare(model: Path, repeats: int, cwd: Path, jobs: dict) -> dict:
    samples: dict[str, list] = {name: [] for name in jobs}
    for name, job in jobs.items():  # warms the bytecode cache of each `full cached` job
        if name.startswith("full_cached"):
            measure(*job(model), cwd, cached=True)
    for _ in range(repeats):  # alternate, so drift of the machine hits every job alike
        for name, job in jobs.items():
            command, args, *source = job(model)
            samples[name].append(measure(command, args, cwd, *source, cached=name.startswith("full_cached")))
    row = {"model": model.name, "size_mb": model.stat().st_size / 1e6}
    for name, values in samples.items():
        row[name] = statistics.median(v[0] for v in values)
        row[f"{name}_cpu"] = statistics.median(v[1] for v in values)
        row[f"{name}_peak"] = max(v[2] for v in values)
    return row


def with_before(jobs: dict, source: Path | None) -> dict:
    """The jobs, plus the full, ort and full cached runs of the version in `source` when given."""
    if source is None:
        return jobs
    return jobs | {f"{name}_before": (lambda m, name=name: (*JOBS[name](m), source)) for name in ("full", "ort", "full_cached")}


def print_before(rows: list[dict]) -> None:
    if not rows or "full_before" not in rows[0]:
        return
    print(f"\n{'model':<30}{'full before':>12}{'full now':>10}{'now/before':>11}{'CPU before/now':>16}{'ort before':>11}{'ort now':>9}{'now/before':>11}"
          f"{'peak MB before/now':>20}{'cached before/now':>19}{'CPU before/now':>16}")
    for r in rows:
        print(f"{r['model']:<30}{r['full_before']:>12.2f}{r['full']:>10.2f}{r['full'] / r['full_before']:>10.2f}x"
              f"{r['full_before_cpu']:>9.2f} / {r['full_cpu']:<4.2f}{r['ort_before']:>11.2f}"
              f"{r['ort']:>9.2f}{r['ort'] / r['ort_before']:>10.2f}x{r['full_before_peak']:>11.0f} / {r['full_peak']:<7.0f}"
              f"{r['full_cached_before']:>10.2f} / {r['full_cached']:<6.2f}{r['full_cached_before_cpu']:>9.2f} / {r['full_cached_cpu']:<4.2f}")


def print_rows(rows: list[dict], extra: str | None) -> None:
    head = f"{'model':<30}{'MB':>7}{'full s':>8}{'(cpu)':>7}{'cached':>7}{'(cpu)':>7}{'ort s':>7}{'(cpu)':>7}{'polyg. s':>9}{'(cpu)':>7}"
    head += f"{'full/pg':>9}{'ort/pg':>8}{'full MB':>9}{'pg MB':>7}" + (f"{'pg x4 s':>9}{'full/x4':>9}" if extra else "")
    print(head)
    for r in rows:
        line = (f"{r['model']:<30}{r['size_mb']:>7.2f}{r['full']:>8.2f}{r['full_cpu']:>7.2f}{r['full_cached']:>7.2f}{r['full_cached_cpu']:>7.2f}"
                f"{r['ort']:>7.2f}{r['ort_cpu']:>7.2f}"
                f"{r['polygraphy']:>9.2f}{r['polygraphy_cpu']:>7.2f}{r['full'] / r['polygraphy']:>8.2f}x{r['ort'] / r['polygraphy']:>7.2f}x"
                f"{r['full_peak']:>9.0f}{r['polygraphy_peak']:>7.0f}")
        if extra and extra in r:
            line += f"{r[extra]:>9.2f}{r['full'] / r[extra]:>8.2f}x"
        print(line)


def print_goals(rows: list[dict], large: dict | None, plain: dict[str, float]) -> None:
    alone = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in plain.items())
    print(f"\npytest alone (one trivial test, no --model, same plugins): {alone}")
    samples = [r for r in rows if r is not large]
    for job, words in (("full", "full default check"), ("full_cached", "full default check, bytecode cached"),
                       ("full_cached_no_hypothesis", "the same without hypothesis's plugin (no `test` extra)")):
        if samples:
            worst = max(samples, key=lambda r: r[job])
            median = statistics.median(r[job] for r in samples)
            verdict = "meets" if worst[job] <= SAMPLE_GOAL_SECONDS else "MISSES"
            print(f"sample models, {words}: median {median:.2f} s, slowest {worst['model']} {worst[job]:.2f} s wall "
                  f"({worst[f'{job}_cpu']:.2f} s CPU): {verdict} the goal of <= {SAMPLE_GOAL_SECONDS} s")
    if large is None:
        return
    for job, goal in GOALS.items():
        ratio = large[job] / large["polygraphy"]
        cpu_ratio = large[f"{job}_cpu"] / large["polygraphy_cpu"]
        verdict = "meets" if ratio <= goal else "MISSES"
        print(f"large model, {job}: {ratio:.2f}x Polygraphy's wall time ({cpu_ratio:.2f}x its CPU time): {verdict} the goal of <= {goal}x")
    budget = 3 * large["size_mb"] + large["two_sessions_mb"]
    verdict = "within" if large["full_peak"] <= budget else "ABOVE"
    print(f"large model, peak memory of the full run {large['full_peak']:.0f} MB: {verdict} the budget 3 x {large['size_mb']:.0f} MB "
          f"+ two sessions {large['two_sessions_mb']:.0f} MB = {budget:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-samples", action="store_true")
    parser.add_argument("--only", help="measure only the models whose file name contains this text")
    parser.add_argument("--before", type=Path, help="a source tree with another version's onnx2trt_check package, run alongside")
    args = parser.parse_args()
    jobs = with_before(JOBS, args.before)
    with tempfile.TemporaryDirectory(prefix="bench_check_vs_polygraphy-") as tmp:
        cwd = Path(tmp)
        # Copies, so pytest's rootdir is the temporary folder, as in a user's project: the
        # repository's own conftest.py (test settings) is not part of what is measured.
        models = [] if args.skip_samples else [Path(shutil.copy(m, cwd)) for m in sorted((ROOT / "models").glob("*.onnx"))
                                               if args.only is None or args.only in m.name]
        rows = [compare(m, args.repeats, cwd, jobs) for m in models]
        large = None
        if not args.skip_large:
            path = cwd / "resnet50_like.onnx"
            onnx.save(resnet50_like(size=224), str(path))
            x4 = {"polygraphy_x4": lambda m: ("polygraphy", ["run", str(m), "--onnxrt", "--onnxrt", "--iterations", str(FEEDS)])}
            large = compare(path, args.repeats, cwd, jobs | x4)
            large["two_sessions_mb"] = measure("sessions", [str(path)], cwd)[2]
            rows.append(large)
        plain = pytest_alone(cwd, args.repeats)
    print_rows(rows, "polygraphy_x4" if large else None)
    print_goals(rows, large, plain)
    print_before(rows)


if __name__ == "__main__":
    main()
