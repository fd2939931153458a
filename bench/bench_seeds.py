"""Benchmark of the seed stage (issue 3, "Must show"), on the demo dataset by default:

- BAS seed mIoU vs the lambda = 0 baseline (paper Table 6: L_cls + L_frg + L_ac, no class-agnostic head) vs IRN's CAM
  (Table 9), all with foreground fusion off;
- class-agnostic foreground fusion: average and replace vs none (Table 13); and BAS fused with the CAM (fuse_cam);
- image-specific vs global threshold (Table 15), for every variant;
- recall and precision of object pixels at each variant's best global threshold (a CAM firing on the discriminative
  part has a low recall: issue 11 item 3), and each variant's recall at plain BAS's precision (at equal spill);
- the cost of the threshold search relative to plain export (goal <= 1.5x), from the export's own timers.

    PYTHONPATH=. python bench/bench_seeds.py [--configfile configs/demo.yaml] [--workdir DIR] [--cores 2]
        [--threads 1] [--seeds 0 1 2] [--set data.synthetic.family_size=2 ...] [--variants bas_none cam_none]

With --seeds, each training seed (the config's `seed`) runs in its own folder DIR/seed<N> and every number is reported
as mean ± sd over the seeds; --set changes config values first (bench_variant.py's syntax); --variants runs only the
named rows (and trains only the baselines they need): a BAS-against-CAM probe of a new set.

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
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_variant import apply_override  # noqa: E402
from bench.results_block import replace_block  # noqa: E402
from wsss_common.config import initial_weights, validate_config  # noqa: E402
from wsss_common.devices import describe_machine  # noqa: E402
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


def baseline_train_command(voc: Path, labels: Path, settings: dict, method: str, out: Path, loss_log: Path,
                           device: str, threads: str, seed: str, weights: str | None) -> list[str]:
    """``bas_seed.train`` for a baseline (lambda = 0 or the CAM), from the config's ``imagenet_weights`` when it has
    one, as the workflow's BAS model: Tables 6 and 9 compare methods from one initialisation."""
    return ([sys.executable, "-m", "bas_seed.train", "--voc-root", str(voc), "--labels", str(labels), "--settings",
             json.dumps(settings), "--method", method, "--out", str(out), "--loss-log", str(loss_log), "--device",
             device, "--threads", threads, "--seed", seed] + (["--imagenet-weights", str(weights)] if weights else []))


def bench_one(config_path: Path, work: Path, a) -> tuple[dict, list[dict], dict[str, float]]:
    """One training seed: the config's BAS model (workflow), the lambda = 0 and CAM models, every seed variant
    exported and evaluated in ``work``. Returns (validated config, rows, wall times)."""
    config = load_config(config_path)
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

    # 2. the baselines the variants need, same backbone and data
    bas = config["bas"]
    variants = select_variants(a.variants, bas.get("class_agnostic", True))
    needed = {v[1] for v in variants} | ({"cam"} if any(v[3] for v in variants) else set())
    baselines = {"lambda0": (dict(bas, **{"lambda": 0.0, "class_agnostic": False}), "bas"), "cam": (bas, "cam")}
    baselines = {k: v for k, v in baselines.items() if k in needed}
    models = {"bas": res / "bas_seed" / "model.pt"}
    weights = initial_weights(config)  # the baselines start where the workflow's BAS model starts
    for name, (settings, method) in baselines.items():
        models[name] = bench / f"{name}_model.pt"
        record = work / bench / f"{name}_trained_with.json"  # retrain when the settings or seed changed
        wanted = {"settings": settings, "method": method, "seed": seed, "labels": str(train_labels),
                  "imagenet_weights": weights,  # a new file under the same name retrains, as in the workflow
                  "imagenet_weights_mtime": (work / weights).stat().st_mtime_ns if weights else None}
        if not (work / models[name]).is_file() or not record.is_file() or read_json(record) != wanted:
            times[f"train {name}"] = run(
                baseline_train_command(voc, train_labels, settings, method, models[name],
                                       bench / f"{name}_loss_log.jsonl", device, threads, seed, weights),
                work / bench / f"train_{name}.log", work)
            record.write_text(json.dumps(wanted))

    # 3. seed variants: export the eval split with the search on, evaluate
    seeds = dict(config["seeds"], threshold_search=dict(config["seeds"]["threshold_search"], enabled=True))
    rows = []
    for label, model, fusion, fuse_cam in variants:
        key = variant_key((label, model, fusion, fuse_cam))
        out_dir, metrics = bench / key, bench / f"{key}_seed_miou.json"
        settings = dict(seeds, foreground_fusion=fusion, fuse_cam=fuse_cam)
        cmd = [py, "-m", "bas_seed.export", "--voc-root", str(voc), "--labels", str(eval_labels), "--eval-labels",
               str(eval_labels), "--model",
               str(models[model]), "--settings", json.dumps(settings), "--out-dir", str(out_dir), "--device",
               device, "--threads", export_threads, "--timing", str(bench / f"{key}_timing.json")]
        if fuse_cam:
            cmd += ["--cam-model", str(models["cam"])]
        # a rerun with the same settings and the same models this export reads reuses it (a model trained later for
        # another row, as the lambda = 0 one after a --variants probe, does not redo it)
        record = work / bench / f"{key}_exported_with.json"
        used = [model] + (["cam"] if fuse_cam else [])
        wanted = {"cmd": cmd, "models": {n: (work / models[n]).stat().st_mtime_ns for n in used}}
        if not (work / metrics).is_file() or not record.is_file() or read_json(record) != wanted:
            times[f"export {key}"] = run(cmd, work / bench / f"export_{key}.log", work)
            index = {"format": "wsss-index/1", "suffix": ".npz",
                     "items": {p.stem: str(p) for p in sorted((work / out_dir).glob("*.npz"))}}
            (work / bench / f"{key}_index.json").write_text(json.dumps(index))
            run([py, "-m", "bas_seed.evaluate", "--voc-root", str(voc), "--index",
                 str(bench / f"{key}_index.json"), "--labels", str(eval_labels), "--class-names",
                 json.dumps(config["data"]["class_names"]), "--settings", json.dumps(settings), "--split",
                 config["data"]["eval_split"], "--out", str(metrics)], work / bench / f"eval_{key}.log", work)
            record.write_text(json.dumps(wanted))
        m, timing = read_json(work / metrics), read_json(work / bench / f"{key}_timing.json")
        rows.append({"variant": label, "key": key, "best_global_miou": m["miou"],
                     "recall": m["object_pixels"]["recall"], "precision": m["object_pixels"]["precision"],
                     "fg_recall": m["object_pixels"]["fg_recall"],
                     "fg_precision": m["object_pixels"]["fg_precision"],
                     "best_threshold": m["best_threshold"], "fixed_threshold_miou": m["fixed_threshold_miou"],
                     "image_specific_miou": m["image_specific_miou"],
                     "image_specific_threshold_mean": m["image_specific_threshold_mean"],
                     "map_seconds": timing["map_seconds"], "search_seconds": timing["search_seconds"],
                     "n_images": timing["n_images"], "curve": m.get("object_pixels_sweep")})
    add_recall_at_bas_precision(rows)

    (work / bench / "summary.json").write_text(json.dumps({"rows": rows, "times": times}, indent=2))
    return config, rows, times


def recall_at_precision(curve: dict | None, precision: float | None) -> float | None:
    """The highest recall of a recall / precision curve (threshold -> object_pixels) among its thresholds whose
    precision is at least ``precision``: how much of the objects a map covers when it spills no more than the other
    (no interpolation between thresholds). None when no threshold reaches that precision or the curve is missing."""
    if curve is None or precision is None:
        return None
    reached = [p["recall"] for p in curve.values() if p["precision"] is not None and p["precision"] >= precision]
    return max(reached) if reached else None


def add_recall_at_bas_precision(rows: list[dict]) -> None:
    """Each row's recall at the precision of plain BAS at its best global threshold (``recall_at_bas_precision``;
    None without a BAS row): the CAM against BAS at equal spill, where the best-threshold recall lets the sweep buy
    recall with precision."""
    bas = next((r for r in rows if r["key"] == "bas_none"), None)
    for r in rows:
        r["recall_at_bas_precision"] = recall_at_precision(r.get("curve"), bas and bas["precision"])


VARIANTS = [  # (label, model, foreground fusion, fuse_cam); key = model_fusion[_fusecam]
    ("BAS", "bas", "none", False),
    ("BAS, fusion average", "bas", "average", False),
    ("BAS, fusion replace", "bas", "replace", False),
    ("BAS + CAM (fuse_cam)", "bas", "none", True),
    ("lambda = 0 baseline", "lambda0", "none", False),
    ("CAM baseline", "cam", "none", False),
]


def variant_key(variant: tuple) -> str:
    return f"{variant[1]}_{variant[2]}" + ("_fusecam" if variant[3] else "")


def select_variants(keys: list[str] | None, class_agnostic: bool = True) -> list[tuple]:
    """The variants to run, in table order: all by default, else those whose key is in ``keys`` (a probe of BAS
    against the CAM alone: ``--variants bas_none cam_none``). Without the class-agnostic head only the fusion-free
    ones exist."""
    known = [variant_key(v) for v in VARIANTS]
    unknown = sorted(set(keys or []) - set(known))
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    chosen = [v for v in VARIANTS if keys is None or variant_key(v) in keys]
    if not class_agnostic:
        chosen = [v for v in chosen if v[2] == "none"]
    return chosen


def mean_sd(values: list) -> str:
    """'m ± sd' over the non-missing values (sample sd; one value: just the value)."""
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}"


def report(a, config: dict, runs: dict[int, tuple[list[dict], dict[str, float]]]) -> str:
    """The RESULTS block: one row per variant, each number mean ± sd over the training seeds, then each seed."""
    seeds, bas = config["seeds"], config["bas"]
    grid = seeds["threshold_search"]
    n_grid = int(round((grid["stop"] - grid["start"]) / grid["step"])) + 1
    first = next(iter(runs.values()))[0]
    synthetic = config["data"].get("synthetic") or {}
    dataset = ("real data" if config["data"]["root"] else
               f"synthetic set seed {synthetic.get('seed')}, family_size {synthetic.get('family_size', 1)}, "
               f"part_radius {synthetic.get('part_radius', 0.2)}"
               + (f", context halos {synthetic['context_halo_prob']} x {synthetic.get('context_halo_scale', 1.6)}"
                  if synthetic.get("context_halo_prob") else ""))
    lines = [
        "## Seeds (stage 2: bench/bench_seeds.py)", "",
        f"`python bench/bench_seeds.py --configfile {a.configfile} --seeds {' '.join(map(str, runs))}"
        + "".join(f" --set {s}" for s in a.set)
        + (f" --variants {' '.join(a.variants)}" if getattr(a, "variants", None) else "") + f"`: experiment `{config['experiment']}` ({dataset}), device "
        f"`{config['device']}`, {a.cores} cores used, {describe_machine()}, export threads "
        f"{a.threads}, {time.strftime('%Y-%m-%d %H:%M')}. BAS backbone ResNet-{bas['depth']}, {bas['epochs']} epochs; "
        f"scales {seeds['scales']}; seed mIoU on `{config['data']['eval_split']}` ({first[0]['n_images']} images), "
        f"mean ± sd over training seeds {', '.join(map(str, runs))}. Global = best threshold of the sweep "
        f"{seeds['sweep']['start']}..{seeds['sweep']['stop']} by {seeds['sweep']['step']} (the headline, as BAS "
        f"reports it); image-specific = argmin of L_bas + {grid['ac_weight']} L_ac over {n_grid} thresholds "
        f"{grid['start']}..{grid['stop']}. Recall / precision: object pixels given their own class, at the best "
        "global threshold (fg recall: covered by any object class); at BAS's precision: the highest recall on the "
        "variant's sweep at a precision at least plain BAS's at its best threshold.", "",
        "| variant | seed mIoU, best global | image-specific | recall | precision | fg recall | recall at BAS's "
        "precision | best thr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = [r["key"] for r in first]
    for i, key in enumerate(keys):
        rows = [run[0][i] for run in runs.values()]
        col = {c: [r.get(c) for r in rows] for c in ("best_global_miou", "image_specific_miou", "recall",
                                                       "precision", "fg_recall", "recall_at_bas_precision",
                                                       "best_threshold")}
        lines.append(f"| {rows[0]['variant']} | {mean_sd(col['best_global_miou'])} | "
                     f"{mean_sd(col['image_specific_miou'])} | {mean_sd(col['recall'])} | "
                     f"{mean_sd(col['precision'])} | {mean_sd(col['fg_recall'])} | "
                     f"{mean_sd(col['recall_at_bas_precision'])} | "
                     f"{' / '.join(fmt(t) for t in col['best_threshold'])} |")
    lines += ["", "Per training seed (seed mIoU best global / image-specific / recall / precision / recall at BAS's "
              "precision):"]
    for seed, (rows, _) in runs.items():
        lines.append(f"- seed {seed}: " + "; ".join(
            f"{r['variant']} {fmt(r['best_global_miou'])} / {fmt(r['image_specific_miou'])} / {fmt(r['recall'])}"
            f" / {fmt(r['precision'])} / {fmt(r.get('recall_at_bas_precision'))}" for r in rows))
    ratios = [(r["map_seconds"] + r["search_seconds"]) / r["map_seconds"] for rows, _ in runs.values() for r in rows
              if r["map_seconds"]]
    lines += ["", "Paper (VOC train, ResNet-50): BAS 57.7 > lambda = 0 50.1 (Table 6) and > CAM 48.8 (Table 9); "
              "average fusion 58.3, replace 57.9 (Table 13); image-specific 57.8 vs global 57.7 for BAS, 49.5 vs "
              "48.8 for CAM (Table 15).",
              f"Export + search / export, from the exports' own timers: {min(ratios):.2f}-{max(ratios):.2f}x.", "",
              "Wall times (s): " + "; ".join(f"seed {seed}: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items())
                                             for seed, (_, t) in runs.items())]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configfile", default="configs/demo.yaml")
    p.add_argument("--workdir", default=str(ROOT), help="Snakemake working directory (results/ lives here; with "
                   "--seeds, one folder seed<N> per training seed under it)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (the config's `seed`); default: the config's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (bench_variant.py's syntax), e.g. data.synthetic.family_size=2")
    p.add_argument("--cores", type=int, default=2, help="Snakemake cores and training threads")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each export (1: see the note below)")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("--block", default="bench_seeds", help="name of the RESULTS.md block to replace")
    p.add_argument("--variants", nargs="+", metavar="KEY",
                   help="run only these variants (keys as in summary.json: bas_none, bas_average, bas_replace, "
                   "bas_none_fusecam, lambda0_none, cam_none); default: all")
    a = p.parse_args()
    import yaml

    base = yaml.safe_load(Path(a.configfile).read_text())
    for assignment in a.set:
        apply_override(base, assignment)
    work = Path(a.workdir).resolve()
    runs, config = {}, None
    for seed in a.seeds or [base["seed"]]:
        seed_work = work / f"seed{seed}" if a.seeds else work
        if seed_work != ROOT:  # the Snakefile's default configfile resolves against the working directory
            shutil.copytree(ROOT / "configs", seed_work / "configs", dirs_exist_ok=True)
        path = seed_work / "results" / f"bench_seeds_config_seed{seed}.yaml"  # results/ is git-ignored
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(dict(base, seed=seed), sort_keys=False))
        config, rows, times = bench_one(path, seed_work, a)
        runs[seed] = (rows, times)
        print(f"seed {seed}: " + ", ".join(f"{r['key']} {fmt(r['best_global_miou'])}" for r in rows), flush=True)
    text = report(a, config, runs)
    replace_block(Path(a.results), text, a.block)
    print(text)


if __name__ == "__main__":
    main()
