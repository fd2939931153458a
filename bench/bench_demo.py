"""Run the whole demo DAG (synthetic images -> val_miou.json) from scratch and time it, per rule and in total.

    python bench/bench_demo.py [--cores 2] [--configfile configs/demo.yaml] [--workdir DIR]
The goal (issue 5): <= 10 minutes on 2 cores. Prints a markdown block for bench/RESULTS.md with the wall time, the
time spent in each rule (summed over its jobs) and the seed / mask / val mIoU.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wsss_common.devices import describe_machine  # noqa: E402

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")


def rule_times(log: str) -> dict[str, float]:
    """Seconds per rule from Snakemake's output: a job starts at the stamp before 'rule X:' / 'localrule X:' with
    'jobid: N', and ends at the stamp before 'Finished jobid: N'."""
    stamp, start, rule_of, pending_rule = None, {}, {}, None
    total = defaultdict(float)
    for line in log.splitlines():
        m = STAMP.match(line.strip())
        if m:
            stamp = datetime.strptime(m.group(1).replace("  ", " "), "%a %b %d %H:%M:%S %Y")
            continue
        s = line.strip()
        if re.match(r"^(local)?rule \w+:$", s):
            pending_rule = s.split()[-1].rstrip(":")
        elif s.startswith("jobid:") and pending_rule:
            jid = s.split()[1]
            start[jid], rule_of[jid], pending_rule = stamp, pending_rule, None
        elif s.startswith("Finished jobid:"):
            jid = s.split()[2]
            if jid in start and stamp:
                total[rule_of[jid]] += (stamp - start[jid]).total_seconds()
    return dict(total)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", default="configs/demo.yaml")
    p.add_argument("--workdir")
    a = p.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="wsss-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "configs", work / "configs", dirs_exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
           str(work), "--cores", str(a.cores), "--configfile", a.configfile]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    (work / "bench_demo.log").write_text(log)
    if proc.returncode:
        print(log[-5000:])
        raise SystemExit(f"workflow failed; log in {work / 'bench_demo.log'}")
    exp = next(iter((work / "results").iterdir())).name
    metrics = {n: json.loads((work / "results" / exp / "metrics" / f"{n}.json").read_text())
               for n in ("seed_miou", "mask_miou", "val_miou")}
    print(f"### Whole demo DAG ({a.configfile})\n\nmachine: {describe_machine()}; "
          f"command: `python bench/bench_demo.py --cores {a.cores}`\n")
    print(f"- wall time from nothing to val_miou.json: **{wall / 60:.1f} min** ({wall:.0f} s)")
    print("- " + ", ".join(f"{n}: {m['miou']:.2f}" for n, m in metrics.items()))
    print("\n| rule | seconds (summed over its jobs) |\n|---|---|")
    for r, s in sorted(rule_times(log).items(), key=lambda kv: -kv[1]):
        print(f"| {r} | {s:.0f} |")


if __name__ == "__main__":
    main()
