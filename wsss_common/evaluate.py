"""mIoU of label-map PNGs against the ground truth of a split:
``python -m wsss_common.evaluate --voc-root R --split S --index INDEX --class-names JSON --out METRICS_JSON``.

Only the split's ids present in the index are evaluated (pseudo masks cover train_aug, evaluated on train); a split
id missing from the index is an error unless --allow-missing. Writes <out>.json and <out>.md (wsss_common.metrics).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .io import DataError, load_label_png, read_json
from .metrics import confusion_matrix, write_metrics
from .shards import load_index
from .voc import label_sources, load_mask, read_split_ids


def evaluate_index(voc_root, split: str, index: dict[str, str], class_names: list[str],
                   allow_missing: bool = False) -> tuple[np.ndarray, int]:
    ids = read_split_ids(voc_root, split)
    missing = [i for i in ids if i not in index]
    if missing and not allow_missing:
        raise DataError(f"{len(missing)} ids of split {split} have no prediction, e.g. {missing[:5]}")
    c = len(class_names)
    conf = np.zeros((c, c), np.int64)
    n = 0
    for i in ids:
        if i not in index:
            continue
        gt = load_mask(voc_root, i)
        pred = load_label_png(index[i])
        if pred.shape != gt.shape:
            raise DataError(f"{index[i]} has shape {pred.shape}, the ground truth of {i} has {gt.shape}")
        conf += confusion_matrix(gt, pred, c)
        n += 1
    return conf, n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--index", required=True)
    p.add_argument("--class-names", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--extra", default="{}", help="JSON object of extra keys for the metrics file")
    p.add_argument("--extra-from", action="append", default=[],
                   help="JSON file whose keys are copied into the metrics file (e.g. the model's init record)")
    p.add_argument("--allow-missing", action="store_true")
    p.add_argument("--train-labels", help="label cache of the training split: its label sources (XML annotations "
                   "or masks) are recorded as image_labels_source")
    a = p.parse_args(argv)
    names = json.loads(a.class_names)
    conf, n = evaluate_index(a.voc_root, a.split, load_index(a.index), names, a.allow_missing)
    extra = json.loads(a.extra)
    for f in a.extra_from:
        extra.update(read_json(f))
    if a.train_labels:
        extra["image_labels_source"] = label_sources(a.train_labels)
    m = write_metrics(a.out, conf=conf, class_names=names, split=a.split, n_images=n, extra=extra)
    print(f"mIoU {m['miou']} on {n} images of {a.split} -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
