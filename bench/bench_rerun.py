"""What caching saves: the demo DAG from nothing, then one setting of each stage changed in turn, each rerun timed.

    python bench/bench_rerun.py --workdir DIR [--cores 2] [--configfile configs/demo.yaml]

In DIR: the whole DAG to val_miou.json from an empty folder (timed), then, one after the other, a change to the
segmenter (segment.lr), the walk (irn.beta), IRN training (irn.epochs), the seed export (seeds.scales) and BAS
training (bas.epochs). Each change is kept for the next one, so every rerun starts from a finished DAG. Prints a
markdown table: the change, the rules Snakemake reran, the wall time, and its share of the full run.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHANGES = [  # (stage, dotted key, new value)
    ("segmenter", "segment.lr", 0.0009),
    ("random walk", "irn.beta", 9),
    ("IRN training", "irn.epochs", 2),
    ("seed export", "seeds.scales", [1.0]),
    ("BAS training", "bas.epochs", 4),
]


def set_key(config: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = config
    for part in path:
        node = node[part]
    if last not in node:
        raise SystemExit(f"no config key {dotted}")
    node[last] = value


def run(work: Path, config: dict, cores: int, target: str) -> tuple[float, list[str]]:
    (work / "configs" / "rerun.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
           str(work), target, "--cores", str(cores), "--configfile", "configs/rerun.yaml"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    rules = sorted(set(re.findall(r"^(?:local)?rule (\w+):$", proc.stdout + proc.stderr, re.M)))
    return seconds, rules


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", default=str(ROOT / "configs" / "demo.yaml"))
    a = p.parse_args()
    work = Path(a.workdir)
    if (work / "results").exists():
        raise SystemExit(f"{work}/results exists: give an empty --workdir")
    shutil.copytree(ROOT / "configs", work / "configs", dirs_exist_ok=True)
    config = yaml.safe_load(Path(a.configfile).read_text())
    target = f"results/{config['experiment']}/metrics/val_miou.json"
    full, _ = run(work, config, a.cores, target)
    rows = [f"| (none: from an empty folder) | all | {full:.0f} | 100 % |"]
    print(rows[0], flush=True)
    for stage, key, value in CHANGES:
        set_key(config, key, value)
        seconds, rules = run(work, config, a.cores, target)
        share = 100 * seconds / full
        rows.append(f"| {stage}: `{key}: {value}` | {', '.join(rules)} | {seconds:.0f} | {share:.0f} % |")
        print(rows[-1], flush=True)
    print("\n| change | rules rerun | wall s | of the full run |\n|---|---|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
