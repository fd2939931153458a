"""Seed evaluation (bas_irn_facts.md §1.5, gotcha 9):
``python -m bas_seed.evaluate --voc-root R --index SEED_INDEX --labels EVAL_LABELS_JSON --class-names JSON
--settings JSON --out results/<exp>/metrics/seed_miou.json``.

A seed becomes a label map by ``argmax([t, high_res...])`` mapped through ``[0, *keys]`` (ties go to background).
On the evaluation split (VOC train, 1464 images) it reports:
- the global threshold sweep (``seeds.sweep``: BAS sweeps 0.20..0.44 by 0.01) and its best threshold. **The headline
  ``miou`` / ``per_class`` is the best threshold of that sweep**, the number BAS reports (an oracle global threshold);
- the fixed configured threshold ``seeds.eval_threshold`` (``fixed_threshold_miou``);
- the image-specific thresholds stored in the seeds (``image_specific_miou`` / ``image_specific_per_class``; null when
  the export ran without the search);
- ``variants``: the same sweep on the maps from before each fusion (BAS alone beside the CAM-fused seed that IRN
  gets), each with its best threshold;
- ``object_pixels``: recall and precision of object pixels (class-correct, and class-agnostic ``fg_*``) at the best
  global threshold (``image_specific_object_pixels`` at the image-specific ones; each variant its own): a CAM that
  fires on the discriminative part has a low recall (issue 11 item 3); ``object_pixels_sweep``: the same at every
  threshold of the sweep (the recall / precision curve: recall at a given precision compares two maps at equal spill);
- ``best_threshold_on_edge`` (and ``on_edge`` per variant), with a warning in the log and in ``warnings``, when a best
  threshold is the first or last value of the sweep: the optimum may then lie outside it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

from wsss_common.config import load_section
from wsss_common.io import DataError
from wsss_common.metrics import confusion_matrix, object_pixels, scores, write_metrics
from wsss_common.shards import load_index
from wsss_common.voc import label_sources, load_label_cache, load_mask

from .export import load_seed
from .threshold import threshold_grid

log = logging.getLogger("bas_seed.evaluate")


def best_class(high_res: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the highest map value and the class id (from ``keys``) it belongs to (first maximum on ties).
    An image without keys has value -inf everywhere (always background)."""
    if high_res.shape[0] == 0:
        return np.full(high_res.shape[1:], -np.inf, np.float32), np.zeros(high_res.shape[1:], np.int64)
    index = high_res.argmax(axis=0)
    value = np.take_along_axis(high_res, index[None], axis=0)[0]
    return value, np.asarray(keys, np.int64)[index]


def seed_label_map(high_res: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """HxW class ids of ``argmax([threshold, high_res...])`` mapped through ``[0, *keys]``."""
    value, cls = best_class(high_res, keys)
    return np.where(value > np.float32(threshold), cls, 0).astype(np.uint8)


def evaluate_seeds(voc_root, index: dict[str, str], labels: dict[str, list[int]], num_classes: int,
                   sweep: np.ndarray, fixed_threshold: float) -> dict:
    """Confusion matrices over the ids of ``labels``: ``sweep`` (T, C, C), ``fixed`` (C, C), ``image_specific``
    (C, C) or None, the image-specific thresholds used, and ``variants``: name -> (T, C, C) sweep of each map the
    export kept from before a fusion (``variant_<name>`` arrays; e.g. BAS alone beside the CAM-fused seed)."""
    missing = [i for i in labels if i not in index]
    if missing:
        raise DataError(f"{len(missing)} ids of the evaluation split have no seed in the index, e.g. {missing[:5]}")
    c = num_classes
    conf_sweep = np.zeros((len(sweep), c, c), np.int64)
    conf_fixed = np.zeros((c, c), np.int64)
    conf_specific = np.zeros((c, c), np.int64)
    variants: dict[str, np.ndarray] = {}
    specific: list[float] = []
    from tqdm import tqdm

    for n, image_id in enumerate(tqdm(list(labels), desc="seed eval", mininterval=10, file=sys.stderr)):
        seed = load_seed(index[image_id])
        gt = load_mask(voc_root, image_id)
        if gt.shape != seed["high_res"].shape[1:]:
            raise DataError(f"{index[image_id]}: maps {seed['high_res'].shape[1:]} but the mask of {image_id} is "
                            f"{gt.shape}")
        value, cls = best_class(seed["high_res"], seed["keys"])
        for j, t in enumerate(sweep):  # thresholds compared in float32, like the maps and the export's search
            conf_sweep[j] += confusion_matrix(gt, np.where(value > np.float32(t), cls, 0), c)
        conf_fixed += confusion_matrix(gt, np.where(value > np.float32(fixed_threshold), cls, 0), c)
        names = sorted(k.removeprefix("variant_") for k in seed if k.startswith("variant_"))
        if n == 0:
            variants = {name: np.zeros((len(sweep), c, c), np.int64) for name in names}
        elif names != sorted(variants) and seed["keys"].size:
            raise DataError(f"{index[image_id]} keeps the maps {names}, other seeds {sorted(variants)}; re-export")
        for name in names:
            v_value, v_cls = best_class(seed[f"variant_{name}"], seed["keys"])
            for j, t in enumerate(sweep):
                variants[name][j] += confusion_matrix(gt, np.where(v_value > np.float32(t), v_cls, 0), c)
        t_img = float(seed["threshold"])
        if not np.isnan(t_img):
            specific.append(t_img)
            conf_specific += confusion_matrix(gt, np.where(value > np.float32(t_img), cls, 0), c)
        elif seed["keys"].size:
            specific.append(float("nan"))
    searched = [t for t in specific if not np.isnan(t)]
    if searched and len(searched) != len(specific):
        raise DataError(f"{len(specific) - len(searched)} seeds have no image-specific threshold while others do; "
                        "re-export the seeds")
    return {"sweep": conf_sweep, "fixed": conf_fixed, "image_specific": conf_specific if searched else None,
            "thresholds": np.asarray(searched), "n_images": len(labels), "variants": variants}


def best_of_sweep(confs: np.ndarray, sweep: np.ndarray, class_names: list[str]) -> dict:
    """The best global threshold of a sweep, its mIoU and per-class IoU, the whole curve, and ``on_edge``: the best
    threshold is the first or last of the sweep, so the optimum may lie outside it (widen seeds.sweep)."""
    sweep_miou = [scores(conf, class_names)["miou"] for conf in confs]
    best = int(np.nanargmax([np.nan if m is None else m for m in sweep_miou]))
    s = scores(confs[best], class_names)
    return {"miou": s["miou"], "per_class": s["per_class"], "best_threshold": float(sweep[best]),
            "object_pixels": object_pixels(confs[best]), "best_index": best,
            "on_edge": len(sweep) > 1 and best in (0, len(sweep) - 1),
            "threshold_sweep": {f"{t:.4g}": m for t, m in zip(sweep, sweep_miou)},
            "object_pixels_sweep": {f"{t:.4g}": object_pixels(conf) for t, conf in zip(sweep, confs)}}


VARIANT_MEANING = {
    "bas_class_specific": "the class-specific BAS maps alone, before any fusion (Table 6/9 'Ours')",
    "bas_foreground": "BAS with the class-agnostic foreground fusion, before the CAM fusion (Table 13)",
}


def summarize(result: dict, sweep: np.ndarray, fixed_threshold: float, class_names: list[str]) -> tuple[int, dict]:
    """(index of the best sweep threshold, extra metric keys)."""
    headline = best_of_sweep(result["sweep"], sweep, class_names)
    extra = {
        "headline": "best global threshold of the sweep (seeds.sweep), as BAS reports its seed mIoU",
        "best_threshold": headline["best_threshold"],
        "best_threshold_on_edge": headline["on_edge"],
        "object_pixels": headline["object_pixels"],  # recall / precision at the best global threshold
        "threshold_sweep": headline["threshold_sweep"],
        "object_pixels_sweep": headline["object_pixels_sweep"],  # the recall / precision curve over the sweep
        "fixed_threshold": float(fixed_threshold),
        "fixed_threshold_miou": scores(result["fixed"], class_names)["miou"],
        "image_specific_miou": None, "image_specific_per_class": None, "image_specific_object_pixels": None,
        "image_specific_threshold_mean": None, "image_specific_threshold_std": None,
        "variants": {},
    }
    if result["image_specific"] is not None:
        specific = scores(result["image_specific"], class_names)
        extra.update({"image_specific_miou": specific["miou"], "image_specific_per_class": specific["per_class"],
                      "image_specific_object_pixels": object_pixels(result["image_specific"]),
                      "image_specific_threshold_mean": round(float(result["thresholds"].mean()), 4),
                      "image_specific_threshold_std": round(float(result["thresholds"].std()), 4)})
    for name, confs in result["variants"].items():
        v = best_of_sweep(confs, sweep, class_names)
        v.pop("best_index")
        extra["variants"][name] = {"meaning": VARIANT_MEANING.get(name, name), **v}
    return headline["best_index"], extra


def edge_warnings(extra: dict) -> list[str]:
    """One line per sweep whose best threshold lies on the sweep's edge."""
    lines = []
    curves = [("the seed", extra)] + [(f"variant {n}", v) for n, v in extra["variants"].items()]
    for what, v in curves:
        if v.get("best_threshold_on_edge", v.get("on_edge")):
            ts = list(v["threshold_sweep"])
            lines.append(f"the best threshold of {what} ({v['best_threshold']:.4g}) is on the edge of seeds.sweep "
                         f"({ts[0]}..{ts[-1]}): its optimum may lie outside; widen the sweep")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--index", required=True, help="wsss-index/1 of the seed files (merge_seeds)")
    p.add_argument("--labels", required=True, help="label cache JSON of the evaluation split (its ids are used)")
    p.add_argument("--class-names", required=True, help="data.class_names as JSON")
    p.add_argument("--settings", required=True, help="config section seeds, as JSON")
    p.add_argument("--split", default="train", help="name of the evaluation split, recorded in the metrics")
    p.add_argument("--train-labels", help="label cache the seeds were made with: its label sources (XML "
                   "annotations or masks) are recorded in the metrics")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    settings = load_section("seeds", a.settings)
    class_names = json.loads(a.class_names)
    sweep = threshold_grid(settings["sweep"]["start"], settings["sweep"]["stop"], settings["sweep"]["step"])
    labels = load_label_cache(a.labels, class_names)
    result = evaluate_seeds(a.voc_root, load_index(a.index), labels, len(class_names), sweep,
                            settings["eval_threshold"])
    best, extra = summarize(result, sweep, settings["eval_threshold"], class_names)
    if a.train_labels:
        extra["image_labels_source"] = label_sources(a.train_labels)
    for line in edge_warnings(extra):
        log.warning(line)
    extra["warnings"] = edge_warnings(extra)
    m = write_metrics(a.out, conf=result["sweep"][best], class_names=class_names, split=a.split,
                      n_images=result["n_images"], extra=extra)
    for name, v in extra["variants"].items():
        log.info("variant %s (%s): seed mIoU %s at %.2f", name, v["meaning"], v["miou"], v["best_threshold"])
    log.info("seed mIoU %s at the best global threshold %.2f (fixed %.2f: %s, image-specific: %s) on %d images",
             m["miou"], extra["best_threshold"], extra["fixed_threshold"], extra["fixed_threshold_miou"],
             extra["image_specific_miou"], result["n_images"])


if __name__ == "__main__":
    main()

