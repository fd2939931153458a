"""How a run's cost grows with the data, and what a second shard buys (issue 13).

    python bench/bench_scaling.py --workdir DIR [--factors 1 2 4] [--cores 2] [--shards-at 1]
                                  [--configfile configs/demo.yaml] [--plot bench/scaling.png] [--write-results]

1. Scaling: for each factor f, the demo DAG from an empty folder DIR/x{f} with f times the synthetic set's image
   counts (train_aug, train, val) and every other setting unchanged. Per rule: seconds summed over its jobs (from
   Snakemake's job stamps, bench_demo.rule_times) and the whole-DAG wall time. The "per image" ratio is
   seconds(f) / (f * seconds(1)): 1.0 is linear growth. Also each size's seed / mask / val mIoU.
2. Shards: in the finished DIR/x{shards-at}, each sharded stage (seed export, CRF IR labels, random walk, val
   prediction) is forced to rerun alone with 1 and then 2 shards (`--forcerun` + `--allowed-rules`: the stage and
   its merge), and its throughput is images / the longest shard job (each shard job runs on one thread; Snakemake's
   benchmark: files time the jobs). Speed-up 2.0 is perfect use of 2 cores.

Prints both tables (markdown); --write-results puts them in bench/RESULTS.md's block `scaling`, and --plot draws
both beside each other. The measurements are kept in DIR/scaling.json; --render redoes the tables and plot from it.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_demo import rule_times  # noqa: E402
from bench_rerun import set_key  # noqa: E402
from results_block import replace_block  # noqa: E402

sys.path.insert(0, str(ROOT))
from wsss_common.devices import describe_machine  # noqa: E402

COUNT_KEYS = ("n_train", "n_train_seg", "n_val")
MIN_RATIO_SECONDS = 5.0  # Snakemake's job stamps are whole seconds: no ratio for a rule under this at the first size
# (label, rule, merge rule, shard key, merged output relative to results/{exp}, outputs' folder glob)
SHARDED = [
    ("seed export", "export_seeds", "merge_seeds", "seeds.shards", "seeds/index.json", "seeds/shard_*"),
    ("CRF IR labels", "make_ir_labels", "merge_ir_labels", "irn.label_shards", "ir_labels/index.json",
     "ir_labels/shard_*"),
    ("random walk", "make_pseudo_masks", "merge_pseudo_masks", "irn.mask_shards", "pseudo_masks/index.json",
     "pseudo_masks/shard_*"),
    ("val prediction", "predict_val", "merge_val_predictions", "segment.predict_shards", "val_predictions/index.json",
     "val_predictions/shard_*"),
]


def scaled_config(config: dict, factor: int) -> dict:
    """The config with the synthetic set's image counts multiplied by ``factor`` (nothing else changed)."""
    out = yaml.safe_load(yaml.safe_dump(config))
    synthetic = out["data"].get("synthetic")
    if out["data"].get("root") is not None or not synthetic:
        raise SystemExit("scaling needs the generated synthetic set (data.root: null)")
    for key in COUNT_KEYS:
        synthetic[key] = int(synthetic[key]) * factor
    return out


def snakemake(work: Path, config: dict, cores: int, extra: list[str]) -> tuple[float, str]:
    (work / "configs" / "scaling.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
           str(work), *extra, "--cores", str(cores), "--configfile", "configs/scaling.yaml"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    if proc.returncode:
        raise SystemExit(f"snakemake failed in {work}:\n{log[-3000:]}")
    return seconds, log


def per_image_ratio(seconds: float, factor: int, base: float) -> float:
    """seconds(f) / (f * seconds(1)): 1.0 = linear in the image count, < 1 = fixed costs, > 1 = super-linear."""
    return seconds / (factor * base) if base > 0 else float("nan")


def benchmark_seconds(path: Path) -> float:
    """The `s` column of a Snakemake benchmark: file (one job)."""
    with path.open() as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def count_outputs(folders: list[Path]) -> int:
    return sum(1 for d in folders for p in d.iterdir() if p.suffix in (".npz", ".png"))


def quality(results: Path) -> dict:
    """seed / mask / val mIoU of a finished run, the seeds' GT-best threshold, and t_hat (the median image-specific
    threshold that `auto` scales; None when the config sets every IRN threshold by hand)."""
    out = {n: json.loads((results / "metrics" / f"{n}.json").read_text())
           for n in ("seed_miou", "mask_miou", "val_miou")}
    walk = results / "irn" / "thresholds_walk.json"
    return {"seed": out["seed_miou"]["miou"], "mask": out["mask_miou"]["miou"], "val": out["val_miou"]["miou"],
            "gt_best_threshold": out["seed_miou"].get("best_threshold"),
            "t_hat": json.loads(walk.read_text()).get("image_threshold_median") if walk.is_file() else None}


def run_scaling(args, config: dict) -> list[dict]:
    runs = []
    for factor in args.factors:
        work = Path(args.workdir) / f"x{factor}"
        if (work / "results").exists():
            raise SystemExit(f"{work}/results exists: give an empty --workdir")
        work.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ROOT / "configs", work / "configs", dirs_exist_ok=True)
        wall, log = snakemake(work, scaled_config(config, factor), args.cores, [])
        (work / "bench_scaling.log").write_text(log)
        runs.append({"factor": factor, "wall": wall, "rules": rule_times(log),
                     "images": int(config["data"]["synthetic"]["n_train"]) * factor,
                     "quality": quality(work / "results" / config["experiment"])})
        print(f"x{factor}: {wall:.0f} s", flush=True)
    return runs


def run_shards(args, config: dict) -> list[dict]:
    work = Path(args.workdir) / f"x{args.shards_at}"
    config = scaled_config(config, args.shards_at)
    exp = config["experiment"]
    results = work / "results" / exp
    rows = []
    for label, rule, merge, key, merged, glob in SHARDED:
        row = {"stage": label, "rule": rule}
        for n in (1, 2):
            set_key(config, key, n)
            wall, _ = snakemake(work, config, args.cores,
                                [f"results/{exp}/{merged}", "--forcerun", rule, "--allowed-rules", rule, merge])
            folders = [results / glob.replace("*", str(i)) for i in range(n)]
            jobs = [benchmark_seconds(results / "benchmarks" / f"{rule}_{i}.tsv") for i in range(n)]
            row[n] = {"images": count_outputs(folders), "longest": max(jobs), "jobs": jobs, "wall": wall}
            print(f"{label}, {n} shard(s): {row[n]['images']} images, jobs {jobs} s, snakemake {wall:.0f} s",
                  flush=True)
        set_key(config, key, 2)
        rows.append(row)
    return rows


def scaling_table(runs: list[dict]) -> str:
    base = runs[0]
    f0 = base["factor"]
    rules = sorted((r for r in base["rules"] if max(x["rules"].get(r, 0.0) for x in runs) >= 1.0),
                   key=lambda r: -base["rules"][r])  # rules under a second at every size are left out
    head = "| rule | " + " | ".join(f"x{r['factor']} s" for r in runs) + " | " + \
        " | ".join(f"x{r['factor']} per image" for r in runs[1:]) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(runs) - 1)]

    def row(name, values):
        ratios = [per_image_ratio(v, r["factor"] // f0, values[0]) for v, r in zip(values[1:], runs[1:])]
        shown = [f"{x:.2f}" if values[0] >= MIN_RATIO_SECONDS else "–" for x in ratios]
        return f"| {name} | " + " | ".join(f"{v:.0f}" for v in values) + " | " + " | ".join(shown) + " |"

    lines.append(row("**whole DAG (wall)**", [r["wall"] for r in runs]))
    for rule in rules:
        lines.append(row(rule, [r["rules"].get(rule, 0.0) for r in runs]))
    return "\n".join(lines)


def quality_table(runs: list[dict]) -> str:
    """seed / mask / val mIoU per size (the same config and seeds: what more images alone buy)."""
    lines = ["| images (train split) | seed mIoU | mask mIoU | val mIoU | t_hat | GT-best seed threshold |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        q = r["quality"]
        t_hat = "–" if q["t_hat"] is None else f"{q['t_hat']:.2f}"
        lines.append(f"| {r['images']} (x{r['factor']}) | {q['seed']:.2f} | {q['mask']:.2f} | {q['val']:.2f} | "
                     f"{t_hat} | {q['gt_best_threshold']:.2f} |")
    return "\n".join(lines)


def shards_table(rows: list[dict]) -> str:
    lines = ["| stage | images | 1 shard s | 1 shard img/s | 2 shards: longest job s | 2 shards img/s | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        one, two = r[1], r[2]
        t1, t2 = one["images"] / one["longest"], two["images"] / two["longest"]
        lines.append(f"| {r['stage']} (`{r['rule']}`) | {two['images']} | {one['longest']:.1f} | {t1:.2f} | "
                     f"{two['longest']:.1f} ({' / '.join(f'{j:.1f}' for j in two['jobs'])}) | {t2:.2f} | "
                     f"{t2 / t1:.2f}x |")
    return "\n".join(lines)


def plot(runs: list[dict], rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    factors = [r["factor"] for r in runs]
    base = runs[0]
    a.plot(factors, [r["wall"] for r in runs], "o-k", label="whole DAG (wall)")
    a.plot(factors, [base["wall"] * f / factors[0] for f in factors], ":k", label="linear from x1")
    for rule in sorted(base["rules"], key=lambda r: -base["rules"][r])[:5]:
        a.plot(factors, [r["rules"].get(rule, 0.0) for r in runs], "o-", label=rule)
    a.set_xlabel("image count (x demo)")
    a.set_ylabel("seconds")
    a.set_xticks(factors)
    a.legend(fontsize=7)
    a.set_title("cost against image count")
    if rows:
        x = range(len(rows))
        one = [r[1]["images"] / r[1]["longest"] for r in rows]
        two = [r[2]["images"] / r[2]["longest"] for r in rows]
        b.bar([i - 0.2 for i in x], one, 0.4, label="1 shard")
        b.bar([i + 0.2 for i in x], two, 0.4, label="2 shards")
        b.set_xticks(list(x), [r["stage"] for r in rows], fontsize=8)
        b.set_ylabel("images / s")
        b.legend()
        b.set_title("sharded stages on 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def header(args) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return (f"Scaling (`bench/bench_scaling.py --cores {args.cores}`): {describe_machine()}, CPU only; "
            f"commit {commit}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--shards-at", type=int, default=1, help="the factor whose finished run measures 1 vs 2 shards")
    p.add_argument("--no-shards", action="store_true")
    p.add_argument("--configfile", default=str(ROOT / "configs" / "demo.yaml"))
    p.add_argument("--plot", default=None, help="PNG path for the two plots")
    p.add_argument("--write-results", action="store_true")
    p.add_argument("--render", action="store_true", help="only redo the tables and plot from WORKDIR/scaling.json")
    a = p.parse_args(argv)
    if a.factors[0] != min(a.factors) or sorted(a.factors) != a.factors:
        p.error("--factors must be ascending")
    if any(f % a.factors[0] for f in a.factors):
        p.error("every factor must be a multiple of the first")
    if not a.no_shards and a.shards_at not in a.factors:
        p.error("--shards-at must be one of --factors")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    raw = Path(args.workdir) / "scaling.json"
    if args.render:  # tables and plot again from a finished run's measurements
        saved = json.loads(raw.read_text())
        runs, rows, head = saved["runs"], [{**r, 1: r["1"], 2: r["2"]} for r in saved["shards"]], saved["header"]
    else:
        config = yaml.safe_load(Path(args.configfile).read_text())
        runs = run_scaling(args, config)
        rows = [] if args.no_shards else run_shards(args, config)
        head = header(args)
        raw.write_text(json.dumps({"header": head, "runs": runs,
                                   "shards": [{**{k: v for k, v in r.items() if k not in (1, 2)}, "1": r[1], "2": r[2]}
                                              for r in rows]}, indent=1))
    body = head + "\n\n" + scaling_table(runs)
    if rows:
        body += "\n\n" + shards_table(rows)
    if all("quality" in r for r in runs):
        body += "\n\n" + quality_table(runs)
    if args.plot:
        plot(runs, rows, Path(args.plot))
        body += f"\n\n![scaling]({Path(args.plot).name})"
    print(body)
    if args.write_results:
        replace_block(ROOT / "bench" / "RESULTS.md", body, "scaling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
