"""Confusion-matrix mIoU, the IRN false-positive/false-negative rates, and the metrics file format.

A metrics file ``results/<experiment>/metrics/<name>.json`` holds at least:
    miou (percent), per_class (name -> IoU percent, null for a class absent from both GT and prediction),
    split, n_images
plus ``bg_fp``, ``bg_fn``, ``fg_fp``, ``fg_fn`` (percent, as IRN's eval_sem_seg prints them) and any extra keys a stage
adds. A markdown table with the same numbers is written beside it (<name>.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .io import write_json_atomic, write_text_atomic

IGNORE = 255


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """C x C int64 matrix, rows = ground truth, columns = prediction. GT pixels equal to ``ignore`` are skipped.

    Predicted values outside 0..C-1 (e.g. 255) count as background, as in IRN's evaluation.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: ground truth {gt.shape} vs prediction {pred.shape}")
    keep = gt != ignore
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground-truth class ids outside 0..{num_classes - 1}")
    p = np.where((p < 0) | (p >= num_classes), 0, p)
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU (fraction); NaN for a class absent from both ground truth and prediction."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def object_pixels(conf: np.ndarray) -> dict[str, float | None]:
    """Recall and precision (percent) of object pixels from a confusion matrix (rows GT, columns prediction; class 0
    is background), summed over all object classes (micro average):
    - ``recall``: object pixels given their own class / object pixels; ``precision``: pixels predicted as an object
      class that have that class / pixels predicted as an object class;
    - ``fg_recall`` / ``fg_precision``: the same with the classes merged into one "object" class (how much of the
      objects the map covers, whichever class it names)."""
    c = np.asarray(conf, np.float64)
    tp = np.trace(c[1:, 1:])
    gt_obj, pred_obj, fg_tp = c[1:, :].sum(), c[:, 1:].sum(), c[1:, 1:].sum()

    def pct(num: float, den: float) -> float | None:
        return round(100.0 * num / den, 4) if den > 0 else None

    return {"recall": pct(tp, gt_obj), "precision": pct(tp, pred_obj), "fg_recall": pct(fg_tp, gt_obj),
            "fg_precision": pct(fg_tp, pred_obj)}


def scores(conf: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """mIoU (nanmean), per-class IoU, and IRN's FP/FN: FP = 1 - GT/union, FN = 1 - Pred/union (all percent)."""
    if conf.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {conf.shape} does not match {len(class_names)} class names")
    iou = iou_from_confusion(conf)
    c = conf.astype(np.float64)
    gt_count, pred_count, tp = c.sum(1), c.sum(0), np.diag(c)
    union = gt_count + pred_count - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        fp = np.where(union > 0, 1.0 - gt_count / union, np.nan)
        fn = np.where(union > 0, 1.0 - pred_count / union, np.nan)

    def pct(x: float) -> float | None:
        return None if np.isnan(x) else round(float(x) * 100.0, 4)

    return {
        "miou": pct(np.nanmean(iou)) if not np.all(np.isnan(iou)) else None,
        "per_class": {name: pct(v) for name, v in zip(class_names, iou)},
        "bg_fp": pct(fp[0]),
        "bg_fn": pct(fn[0]),
        "fg_fp": pct(np.nanmean(fp[1:])) if not np.all(np.isnan(fp[1:])) else None,
        "fg_fn": pct(np.nanmean(fn[1:])) if not np.all(np.isnan(fn[1:])) else None,
    }


def metrics_markdown(name: str, metrics: dict[str, Any]) -> str:
    lines = [f"# {name}", "", f"split: {metrics['split']}, images: {metrics['n_images']}, "
             f"mIoU: {_fmt(metrics['miou'])}", "", "| class | IoU (%) |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics["per_class"].items()]
    shown = ("per_class", "miou", "split", "n_images")
    extra = {k: v for k, v in metrics.items() if k not in shown and (v is None or isinstance(v, (int, float, str)))}
    if extra:
        lines += ["", "| key | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def write_metrics(json_path: str | Path, *, conf: np.ndarray, class_names: list[str], split: str, n_images: int,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write <name>.json and <name>.md (atomically) and return the metrics dict."""
    json_path = Path(json_path)
    metrics: dict[str, Any] = {"miou": None, "per_class": {}, "split": split, "n_images": int(n_images)}
    metrics.update(scores(conf, class_names))
    metrics["split"], metrics["n_images"] = split, int(n_images)
    if extra:
        metrics.update(extra)
    write_json_atomic(json_path, metrics)
    write_text_atomic(json_path.with_suffix(".md"), metrics_markdown(json_path.stem, metrics))
    return metrics
