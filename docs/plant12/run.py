"""Judge every planted model as a user would (plant12): pytest --model D --reference-model O --inputs ..."""
import json, subprocess, sys, re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PY = "/work/venvs/plant12/bin"
RUNS = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/plant12/runs")
RUNS.mkdir(exist_ok=True)
index = json.loads(Path("/work/plant12/models/index.json").read_text())
only = set(sys.argv[2:])


def command(f):
    extra = [e for e in f["extra"] if e != "NOINPUTS"]
    data = [] if "NOINPUTS" in f["extra"] else [f"--inputs={f['inputs']}"]
    return [f"{PY}/pytest", f"--model={f['derived']}", f"--reference-model={f['original']}", *data, *extra,
            "-p", "no:cacheprovider", "-q", "-rfE", f"--report-json={RUNS}/{f['id']}.json"]


def run(f):
    cmd = command(f)
    (RUNS / f"{f['id']}.json").unlink(missing_ok=True)
    p = subprocess.run(cmd, cwd="/tmp/plant12-user", capture_output=True, text=True)
    (RUNS / f"{f['id']}.out").write_text(p.stdout + p.stderr)
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) \S+?::(\S+)", p.stdout, re.M)))
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr.strip()[-200:]
    return {**f, "command": " ".join(cmd[0:1] + [c for c in cmd[1:] if not c.startswith("--report-json")]).replace(PY + "/", ""), "exit": p.returncode, "failed": failed, "tail": last}


todo = [f for f in index if not only or f["id"] in only]
with ThreadPoolExecutor(2) as pool:
    results = list(pool.map(run, todo))
for r in results:
    print(f"{r['id']:28s} exit={r['exit']} right={r['right']:12s} failed={r['failed']} | {r['tail']}")
(RUNS / "results.json").write_text(json.dumps(results, indent=1))
