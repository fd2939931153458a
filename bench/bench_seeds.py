"""Benchmark of the seed stage (issue 3, "Must show"), on the demo dataset by default:

- BAS seed mIoU vs the lambda = 0 baseline (paper Table 6: L_cls + L_frg + L_ac, no class-agnostic head) vs IRN's CAM
  (Table 9), all with foreground fusion off;
- class-agnostic foreground fusion: average and replace vs none (Table 13); and BAS fused with the CAM (fuse_cam);
- image-specific vs global threshold (Table 15), for every variant;
- the cost of the threshold search relative to plain export (goal <= 1.5x), from the export's own timers.

    PYTHONPATH=. python bench/bench_seeds.py [--configfile configs/demo.yaml] [--workdir DIR] [--cores 2]
        [--threads 1]

Exports run with one torch thread by default: on a busy 2-core machine two intra-op threads made the export ~40x
slower (OpenMP threads waiting on each other), which would distort the cost ratio.

The dataset, the image-label caches and the BAS model of the config come from the workflow (Snakemake targets, so an
existing results/<experiment>/ is reused); the lambda = 0 and CAM models are trained here with bas_seed.train.
Seeds are exported for the evaluation split only (each image is exported independently, so its metrics equal those
of a full train_aug export) with the config's seeds settings and the search on every image. The numbers go to
bench/RESULTS.md (section "Seeds", replaced on every run; the rest of the file is left alone) and to
<workdir>/bench_seeds/summary.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results_block import replace_block  # noqa: E402
from wsss_common.config import validate_config  # noqa: E402
from wsss_common.io import read_json  # noqa: E402



def run(cmd: list[str], log: Path, cwd: Path) -> float:
    """Run a command (stdout+stderr to ``log``); raise with the log's tail when it fails; return wall seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env).returncode
    if code:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n--- {log} ---\n{tail}")
    return time.perf_counter() - start


def load_config(path: Path) -> dict:
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f)
    return validate_config(config, ROOT / "workflow" / "schemas")


def fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configfile", default="configs/demo.yaml")
    p.add_argument("--workdir", default=str(ROOT), help="Snakemake working directory (results/ lives here)")
    p.add_argument("--cores", type=int, default=2, help="Snakemake cores and training threads")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each export (1: see the note below)")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    a = p.parse_args()
    config_path = Path(a.configfile).resolve()
    config = load_config(config_path)
    work = Path(a.workdir).resolve()
    exp = config["experiment"]
    res = Path("results") / exp
    bench = res / "bench_seeds"
    (work / bench).mkdir(parents=True, exist_ok=True)
    py = sys.executable
    device, seed, threads = config["device"], str(config["seed"]), str(a.cores)
    export_threads = str(a.threads)
    train_labels = res / "data" / "labels" / f"{config['data']['train_split']}.json"
    eval_labels = res / "data" / "labels" / f"{config['data']['eval_split']}.json"
    voc = Path(config["data"]["root"]) if config["data"]["root"] else res / "data" / "VOC2012"
    times: dict[str, float] = {}

    # 1. dataset, labels and the configured BAS model, through the workflow
    times["workflow (data + BAS model)"] = run(
        [py, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work),
         "--configfile", str(config_path), "--cores", str(a.cores), str(res / "bas_seed" / "model.pt"),
         str(train_labels), str(eval_labels)], work / bench / "snakemake.log", work)

    # 2. the two baselines, same backbone and data
    bas = config["bas"]
    baselines = {"lambda0": (dict(bas, **{"lambda": 0.0, "class_agnostic": False}), "bas"), "cam": (bas, "cam")}
    models = {"bas": res / "bas_seed" / "model.pt"}
    for name, (settings, method) in baselines.items():
        models[name] = bench / f"{name}_model.pt"
        record = work / bench / f"{name}_trained_with.json"  # retrain when the settings or seed changed
        wanted = {"settings": settings, "method": method, "seed": seed, "labels": str(train_labels)}
        if not (work / models[name]).is_file() or not record.is_file() or read_json(record) != wanted:
            times[f"train {name}"] = run(
                [py, "-m", "bas_seed.train", "--voc-root", str(voc), "--labels", str(train_labels), "--settings",
                 json.dumps(settings), "--method", method, "--out", str(models[name]), "--loss-log",
                 str(bench / f"{name}_loss_log.jsonl"), "--device", device, "--threads", threads, "--seed", seed],
                work / bench / f"train_{name}.log", work)
            record.write_text(json.dumps(wanted))

    # 3. seed variants: export the eval split with the search on, evaluate
    seeds = dict(config["seeds"], threshold_search=dict(config["seeds"]["threshold_search"], enabled=True))
    variants = [
        ("BAS", "bas", "none", False),
        ("BAS, fusion average", "bas", "average", False),
        ("BAS, fusion replace", "bas", "replace", False),
        ("BAS + CAM (fuse_cam)", "bas", "none", True),
        ("lambda = 0 baseline", "lambda0", "none", False),
        ("CAM baseline", "cam", "none", False),
    ]
    if not bas.get("class_agnostic", True):
        variants = [v for v in variants if v[2] == "none"]
    rows = []
    for label, model, fusion, fuse_cam in variants:
        key = f"{model}_{fusion}" + ("_fusecam" if fuse_cam else "")
        out_dir, metrics = bench / key, bench / f"{key}_seed_miou.json"
        settings = dict(seeds, foreground_fusion=fusion, fuse_cam=fuse_cam)
        cmd = [py, "-m", "bas_seed.export", "--voc-root", str(voc), "--labels", str(eval_labels), "--model",
               str(models[model]), "--settings", json.dumps(settings), "--out-dir", str(out_dir), "--device",
               device, "--threads", export_threads, "--timing", str(bench / f"{key}_timing.json")]
        if fuse_cam:
            cmd += ["--cam-model", str(models["cam"])]
        times[f"export {key}"] = run(cmd, work / bench / f"export_{key}.log", work)
        index = {"format": "wsss-index/1", "suffix": ".npz",
                 "items": {p.stem: str(p) for p in sorted((work / out_dir).glob("*.npz"))}}
        (work / bench / f"{key}_index.json").write_text(json.dumps(index))
        run([py, "-m", "bas_seed.evaluate", "--voc-root", str(voc), "--index", str(bench / f"{key}_index.json"),
             "--labels", str(eval_labels), "--class-names", json.dumps(config["data"]["class_names"]),
             "--settings", json.dumps(settings), "--split", config["data"]["eval_split"], "--out", str(metrics)],
            work / bench / f"eval_{key}.log", work)
        m, timing = read_json(work / metrics), read_json(work / bench / f"{key}_timing.json")
        rows.append({"variant": label, "key": key, "best_global_miou": m["miou"],
                     "best_threshold": m["best_threshold"], "fixed_threshold_miou": m["fixed_threshold_miou"],
                     "image_specific_miou": m["image_specific_miou"],
                     "image_specific_threshold_mean": m["image_specific_threshold_mean"],
                     "map_seconds": timing["map_seconds"], "search_seconds": timing["search_seconds"],
                     "n_images": timing["n_images"]})

    grid = seeds["threshold_search"]
    n_grid = int(round((grid["stop"] - grid["start"]) / grid["step"])) + 1
    lines = [
        "## Seeds (stage 2: bench/bench_seeds.py)", "",
        f"Config `{a.configfile}` (experiment `{exp}`), device `{device}`, {a.cores} cores, "
        f"{platform.processor() or platform.machine()}, export threads {a.threads}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}. "
        f"BAS backbone ResNet-{bas['depth']}, {bas['epochs']} epochs; scales {seeds['scales']}; seed mIoU on "
        f"`{config['data']['eval_split']}` ({rows[0]['n_images']} images). Global = best threshold of the sweep "
        f"{seeds['sweep']['start']}..{seeds['sweep']['stop']} by {seeds['sweep']['step']} (the headline, as BAS "
        f"reports it); image-specific = argmin of L_bas + {grid['ac_weight']} L_ac over {n_grid} thresholds "
        f"{grid['start']}..{grid['stop']}.", "",
        "| variant | seed mIoU, best global (thr) | fixed " + fmt(seeds["eval_threshold"]) +
        " | image-specific (mean thr) | export s/img | search s/img | export+search / export |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = max(r["n_images"], 1)
        ratio = (r["map_seconds"] + r["search_seconds"]) / r["map_seconds"] if r["map_seconds"] else None
        lines.append(f"| {r['variant']} | {fmt(r['best_global_miou'])} ({fmt(r['best_threshold'])}) | "
                     f"{fmt(r['fixed_threshold_miou'])} | {fmt(r['image_specific_miou'])} "
                     f"({fmt(r['image_specific_threshold_mean'])}) | {r['map_seconds'] / n:.3f} | "
                     f"{r['search_seconds'] / n:.3f} | {fmt(ratio)} |")
    lines += ["", "Paper (VOC train, ResNet-50): BAS 57.7 > lambda = 0 50.1 (Table 6) and > CAM 48.8 (Table 9); "
              "average fusion 58.3, replace 57.9 (Table 13); image-specific 57.8 vs global 57.7 for BAS, 49.5 vs "
              "48.8 for CAM (Table 15). Search cost goal: export+search <= 1.5x export.", "",
              "Wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())]
    replace_block(Path(a.results), "\n".join(lines), "bench_seeds")
    (work / bench / "summary.json").write_text(json.dumps({"rows": rows, "times": times}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
