"""Measure the inputs of the IRN random walk on a finished workdir: IR-label quality and boundary-map quality.

    python bench/bench_irn_diagnostics.py --workdir DIR [--configfile configs/demo.yaml] [--images 100] [--json OUT]

Reads results/<experiment>/ of DIR (no stage is rerun) and prints a markdown report:
- IR-label mIoU: the CRF inter-pixel labels (ir_labels/index.json) against the ground truth of data.eval_split, 255
  (unsure) read as background, as the pipeline scores masks; also the fraction of 255 pixels, the mIoU of the
  confident pixels alone (255 pixels left out) and the per-class IoU, beside the seed and pseudo-mask mIoU that the
  pipeline wrote (metrics/seed_miou.json, mask_miou.json) for the same split.
- Boundary AUC: the trained IRN's boundary map (stride 4, as make_pseudo_masks computes it) on the first --images
  ids of the split, scored against the ground-truth void band (GT 255 = object boundaries in the synthetic data)
  max-pooled to the stride-4 grid: ROC AUC (Mann-Whitney) of edge vs non-edge cells, mean boundary on and off edges,
  and inside objects vs on background (cells wholly of one kind): the walk multiplies the seeds by (1 - boundary).
The config is --configfile resolved against DIR first (bench_variant.py writes DIR/configs/variant.yaml), then the
current directory, then the repository; schema defaults are filled in as the workflow does.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsss_common.metrics import IGNORE, confusion_matrix  # noqa: E402

STRIDE = 4


def rank_auc(scores, labels) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (1 = positive) by the Mann-Whitney rank formula; ties get average
    ranks, so a tied positive/negative pair counts 1/2. Raises ValueError when either class is absent."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes: {n_pos} positive and {n_neg} negative samples")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def edge_grid(edge: np.ndarray, grid_hw: tuple[int, int], stride: int = STRIDE) -> np.ndarray:
    """Boolean H x W edge mask -> h x w boolean grid: zero-padded right/bottom to (stride*h, stride*w), then a
    stride x stride max-pool (a cell is an edge cell if any of its pixels is)."""
    edge = np.asarray(edge, bool)
    h, w = grid_hw
    height, width = edge.shape
    if height > stride * h or width > stride * w:
        raise ValueError(f"mask {edge.shape} is larger than the {h}x{w} grid at stride {stride}")
    padded = np.zeros((stride * h, stride * w), bool)
    padded[:height, :width] = edge
    return padded.reshape(h, stride, w, stride).any(axis=(1, 3))


def cell_fraction(mask: np.ndarray, grid_hw: tuple[int, int], stride: int = STRIDE) -> np.ndarray:
    """Boolean H x W mask -> h x w float grid: the fraction of each stride x stride cell's pixels that are True
    (pixels beyond the image count as False, so a cell that sticks out of the image is never 1)."""
    mask = np.asarray(mask, bool)
    h, w = grid_hw
    height, width = mask.shape
    if height > stride * h or width > stride * w:
        raise ValueError(f"mask {mask.shape} is larger than the {h}x{w} grid at stride {stride}")
    padded = np.zeros((stride * h, stride * w), np.float64)
    padded[:height, :width] = mask
    return padded.reshape(h, stride, w, stride).mean(axis=(1, 3))


def ir_label_confusion(gt: np.ndarray, label: np.ndarray, num_classes: int, unsure: str = "background") -> np.ndarray:
    """Confusion matrix (rows GT, columns IR label) of one IR label map. Its 255 pixels (unsure) are read as
    background (``unsure="background"``) or left out (``unsure="ignore"``); GT 255 (void) is always left out."""
    gt = np.asarray(gt)
    label = np.asarray(label)
    if gt.shape != label.shape:
        raise ValueError(f"shape mismatch: ground truth {gt.shape} vs IR label {label.shape}")
    if unsure == "background":
        return confusion_matrix(gt, np.where(label == IGNORE, 0, label), num_classes)
    if unsure == "ignore":
        return confusion_matrix(np.where(label == IGNORE, IGNORE, gt), label, num_classes)
    raise ValueError(f"unsure must be 'background' or 'ignore', got {unsure!r}")


# --- everything below reads a workdir ---------------------------------------------------------------------------


def load_config(workdir: Path, configfile: str) -> dict:
    import yaml

    from wsss_common.config import validate_config

    for candidate in (workdir / configfile, Path(configfile), ROOT / configfile):
        if candidate.is_file():
            config = yaml.safe_load(candidate.read_text())
            config = validate_config(config, ROOT / "workflow" / "schemas")
            config["_path"] = str(candidate)
            return config
    raise SystemExit(f"config {configfile} found neither in {workdir}, the current directory nor {ROOT}")


def voc_root(workdir: Path, config: dict) -> Path:
    root = config["data"]["root"]
    if root is None:
        return workdir / "results" / config["experiment"] / "data" / "VOC2012"
    return workdir / root  # an absolute data.root stays as it is; a relative one is relative to the workdir


def ir_label_scores(workdir: Path, root: Path, exp: str, ids: list[str], class_names: list[str]) -> dict:
    from wsss_common.io import load_label_png
    from wsss_common.metrics import scores
    from wsss_common.voc import load_mask

    index_path = workdir / "results" / exp / "ir_labels" / "index.json"
    items = json.loads(index_path.read_text())["items"]
    missing = [i for i in ids if i not in items]
    if missing:
        raise SystemExit(f"{len(missing)} ids of the eval split have no IR label in {index_path}, e.g. {missing[:5]}")
    c = len(class_names)
    conf_bg, conf_confident = np.zeros((c, c), np.int64), np.zeros((c, c), np.int64)
    n_unsure = n_pixels = 0
    for image_id in ids:
        gt = load_mask(root, image_id)
        label = load_label_png(workdir / items[image_id])
        conf_bg += ir_label_confusion(gt, label, c, unsure="background")
        conf_confident += ir_label_confusion(gt, label, c, unsure="ignore")
        n_unsure += int((label == IGNORE).sum())
        n_pixels += label.size
    as_bg, confident = scores(conf_bg, class_names), scores(conf_confident, class_names)
    return {"n_images": len(ids), "miou": as_bg["miou"], "per_class": as_bg["per_class"],
            "unsure_fraction": n_unsure / n_pixels, "confident_miou": confident["miou"],
            "confident_per_class": confident["per_class"]}


def boundary_scores(workdir: Path, root: Path, exp: str, ids: list[str], settings: dict) -> dict:
    import torch

    from irn.data import image_tensor
    from irn.model import boundary_map
    from irn.train import load_model
    from wsss_common.voc import load_image, load_mask

    device = torch.device("cpu")
    model = load_model(workdir / "results" / exp / "irn" / "model.pt", device)
    values, edges, inside, background = [], [], [], []
    for image_id in ids:
        image = load_image(root, image_id)
        bmap = boundary_map(model, image_tensor(image).to(device), pad_to=settings["infer_pad_size"],
                            flip=settings["infer_flip"]).cpu().numpy()
        gt = load_mask(root, image_id)
        values.append(bmap.ravel())
        edges.append(edge_grid(gt == IGNORE, bmap.shape).ravel())
        # cells wholly inside one object class / wholly on background: the walk multiplies the seeds by
        # (1 - boundary), so the boundary should be as low inside objects as on background
        inside.append((cell_fraction((gt > 0) & (gt != IGNORE), bmap.shape) == 1).ravel())
        background.append((cell_fraction(gt == 0, bmap.shape) == 1).ravel())
    v, e = np.concatenate(values), np.concatenate(edges)
    i, g = np.concatenate(inside), np.concatenate(background)
    return {"n_images": len(ids), "n_cells": int(v.size), "edge_fraction": float(e.mean()), "auc": rank_auc(v, e),
            "mean_on_edge": float(v[e].mean()), "mean_off_edge": float(v[~e].mean()),
            "mean_inside_objects": float(v[i].mean()), "mean_on_background": float(v[g].mean())}


def pipeline_metrics(workdir: Path, exp: str) -> dict:
    out = {}
    for name in ("seed_miou", "mask_miou"):
        path = workdir / "results" / exp / "metrics" / f"{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def _f(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def report(r: dict) -> str:
    ir, b, pm = r["ir_labels"], r["boundary"], r["pipeline"]
    seed, mask = pm.get("seed_miou"), pm.get("mask_miou")
    lines = [f"### IRN input diagnostics ({r['config']})", "",
             f"workdir: `{r['workdir']}`, experiment: {r['experiment']}, eval split: {r['split']}; "
             f"command: `python bench/bench_irn_diagnostics.py --workdir DIR --images {r['images_arg']}`", "",
             f"**IR labels** ({ir['n_images']} images, 255 read as background)", "",
             "| labels | mIoU |", "|---|---|",
             f"| IR labels (CRF, 255 -> background) | {_f(ir['miou'])} |",
             f"| IR labels, confident pixels only (255 left out) | {_f(ir['confident_miou'])} |"]
    if seed:
        extra = f", threshold {seed['best_threshold']}" if "best_threshold" in seed else ""
        lines.append(f"| seeds (seed_miou.json{extra}) | {_f(seed.get('miou'))} |")
    if mask:
        lines.append(f"| pseudo masks (mask_miou.json) | {_f(mask.get('miou'))} |")
    lines += ["", f"unsure (255) pixels: {100 * ir['unsure_fraction']:.1f} %", ""]
    head = ["class", "IR label", "IR confident"] + (["seed"] if seed else []) + (["mask"] if mask else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, iou in ir["per_class"].items():
        row = [name, _f(iou), _f(ir["confident_per_class"][name])]
        row += [_f(seed.get("per_class", {}).get(name))] if seed else []
        row += [_f(mask.get("per_class", {}).get(name))] if mask else []
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"**Boundary map** ({b['n_images']} images, {b['n_cells']} stride-4 cells, "
              f"{100 * b['edge_fraction']:.1f} % on the GT void band)", "",
              "| ROC AUC edge vs non-edge | mean on edge | mean off edge | mean inside objects | mean on background |",
              "|---|---|---|---|---|",
              f"| {b['auc']:.4f} | {b['mean_on_edge']:.4f} | {b['mean_off_edge']:.4f} | "
              f"{b['mean_inside_objects']:.4f} | {b['mean_on_background']:.4f} |", "",
              f"wall time: {r['seconds']:.1f} s (1 CPU thread)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--configfile", default="configs/demo.yaml")
    p.add_argument("--images", type=int, default=100, help="eval-split images for the boundary AUC (first N)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    a = p.parse_args(argv)
    if a.images < 1:
        raise SystemExit("--images must be at least 1")
    import torch

    torch.set_num_threads(1)
    from wsss_common.voc import read_split_ids

    t0 = time.perf_counter()
    work = Path(a.workdir)
    config = load_config(work, a.configfile)
    exp, split = config["experiment"], config["data"]["eval_split"]
    root = voc_root(work, config)
    ids = read_split_ids(root, split)
    result = {"workdir": str(work), "config": config["_path"], "experiment": exp, "split": split,
              "images_arg": a.images,
              "ir_labels": ir_label_scores(work, root, exp, ids, config["data"]["class_names"]),
              "boundary": boundary_scores(work, root, exp, ids[:a.images], config["irn"]),
              "pipeline": pipeline_metrics(work, exp)}
    result["seconds"] = time.perf_counter() - t0
    print(report(result))
    if a.json:
        pipeline = {k: {"miou": m.get("miou"), "per_class": m.get("per_class")} for k, m in result["pipeline"].items()}
        Path(a.json).write_text(json.dumps({**result, "pipeline": pipeline}, indent=2) + "\n")


if __name__ == "__main__":
    main()
