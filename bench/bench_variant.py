"""Run the demo workflow with some config values changed, and print one metric: how the demo's settings were chosen.

    python bench/bench_variant.py --workdir DIR --metric mask_miou --set irn.exp_times=6 --set irn.sem_seg_bg_threshold=0.45

The config is configs/demo.yaml (or --configfile) with each ``--set dotted.key=YAML_VALUE`` applied, written to
DIR/configs/variant.yaml; Snakemake then builds results/<experiment>/metrics/<metric>.json in DIR. Reusing one DIR
reruns only what the change affects (e.g. an irn.* change reuses the seeds), so a sweep over one stage is cheap.
Prints one line: the changes, the metric's mIoU (and best threshold for seeds), wall seconds.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def apply_override(config: dict, assignment: str) -> None:
    key, _, value = assignment.partition("=")
    if not _:
        raise SystemExit(f"--set needs dotted.key=value, got {assignment!r}")
    *path, last = key.split(".")
    node = config
    for part in path:
        if part not in node or not isinstance(node[part], dict):
            raise SystemExit(f"--set {key}: no config section {part!r}")
        node = node[part]
    if last not in node:
        raise SystemExit(f"--set {key}: no config key {last!r}")
    node[last] = yaml.safe_load(value)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--configfile", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--metric", default="mask_miou", choices=["seed_miou", "mask_miou", "val_miou"])
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    p.add_argument("--cores", type=int, default=2)
    a = p.parse_args()
    config = yaml.safe_load(Path(a.configfile).read_text())
    for s in a.sets:
        apply_override(config, s)
    work = Path(a.workdir)
    (work / "configs").mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "configs" / "segment", work / "configs" / "segment", dirs_exist_ok=True)
    (work / "configs" / "variant.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    target = f"results/{config['experiment']}/metrics/{a.metric}.json"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
           str(work), target, "--cores", str(a.cores), "--configfile", "configs/variant.yaml"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    (work / "bench_variant.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"workflow failed; log in {work / 'bench_variant.log'}\n{proc.stderr[-3000:]}")
    m = json.loads((work / target).read_text())
    best = f" (best threshold {m['best_threshold']})" if "best_threshold" in m else ""
    print(f"{' '.join(a.sets) or '(demo as is)'}: {a.metric} {m['miou']:.2f}{best}, {seconds:.0f} s")


if __name__ == "__main__":
    main()
