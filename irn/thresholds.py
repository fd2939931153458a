"""IRN's three thresholds, as numbers or ``auto`` (not in IRN or BAS-Extension):
``python -m irn.thresholds --seeds SEED_INDEX --settings JSON --keys fg_threshold,bg_threshold --out FILE``.

``irn.fg_threshold``, ``irn.bg_threshold`` and ``irn.sem_seg_bg_threshold`` may each be ``auto``: set from the
image-specific thresholds that BAS chose for the seeds (``seeds.threshold_search``: per image, the argmin of
L_bas + L_ac over the grid, paper §5.5, Fig. 22), which look at no pixel label. The rule:

    value = auto_reference[key] * t_hat / auto_reference.seed_threshold

with ``t_hat`` the median of the per-image thresholds over the seeds that have one (an unsearched seed stores NaN)
and ``auto_reference`` the released BAS-Extension values: seed threshold 0.30 (its ``cam_eval_thres``), fg 0.30,
bg 0.17, walk background 0.22. It keeps BAS's ratios between its seed threshold and each IRN threshold and moves them
with where this dataset's seeds cross from background to object. The median, not the mean: a few images whose
score is flattest at the grid's edge do not pull it. The output JSON holds the resolved numbers that
``irn.make_ir_labels`` (the CRF pair) and ``irn.make_pseudo_masks`` (the walk's) use, with ``t_hat`` and how many
images it came from; one file per step, so that a changed walk threshold does not redo the IR labels.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys

import numpy as np

from wsss_common.config import load_section
from wsss_common.io import DataError, read_json, write_json_atomic
from wsss_common.shards import load_index

FORMAT = "wsss-irn-thresholds/1"
AUTO_KEYS = ("fg_threshold", "bg_threshold", "sem_seg_bg_threshold")
log = logging.getLogger("irn.thresholds")


def image_thresholds(seed_paths) -> np.ndarray:
    """The searched per-image thresholds stored in ``wsss-seed/1`` files (NaN entries, i.e. unsearched, dropped)."""
    values = []
    for path in seed_paths:
        try:
            with np.load(path) as seed:
                values.append(float(seed["threshold"]))
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"seed file {path}: no readable 'threshold' ({e})") from None
    values = np.asarray(values, np.float64)
    return values[np.isfinite(values)]


def resolve(settings: dict, t_hat: float | None, keys=AUTO_KEYS) -> dict[str, float]:
    """The thresholds ``keys`` as numbers: ``auto`` ones by the rule in the module docstring, the others as given."""
    reference = settings["auto_reference"]
    out = {}
    for key in keys:
        value = settings[key]
        if value == "auto":
            if t_hat is None or not math.isfinite(t_hat):
                raise ValueError(f"config key irn.{key} is auto but no seed has an image-specific threshold "
                                 "(seeds.threshold_search.enabled must be true)")
            value = reference[key] * t_hat / reference["seed_threshold"]
        out[key] = round(float(value), 6)
    if {"fg_threshold", "bg_threshold"} <= set(out) and out["bg_threshold"] > out["fg_threshold"]:
        raise ValueError(f"irn.bg_threshold ({out['bg_threshold']}) is above irn.fg_threshold "
                         f"({out['fg_threshold']}) after resolving auto")
    return out


def thresholds_record(settings: dict, seed_paths, keys=AUTO_KEYS) -> dict:
    """The JSON written by the CLI: the resolved thresholds ``keys``, which were auto, and the statistic behind
    them (the seeds are read only when one is auto)."""
    unknown = [k for k in keys if k not in AUTO_KEYS]
    if unknown or not keys:
        raise ValueError(f"threshold keys must be some of {AUTO_KEYS}, got {list(keys)}")
    auto = [k for k in keys if settings[k] == "auto"]
    values = image_thresholds(seed_paths) if auto else np.zeros(0)
    t_hat = float(np.median(values)) if values.size else None
    record = {"format": FORMAT, **resolve(settings, t_hat, keys), "auto": auto, "image_threshold_median": t_hat,
              "n_images": int(values.size), "auto_reference": settings["auto_reference"]}
    if values.size:
        record["image_threshold_quartiles"] = [round(float(q), 6) for q in np.percentile(values, [25, 75])]
    return record


def load_thresholds(path) -> dict[str, float]:
    """The resolved thresholds of a file written by this module."""
    record = read_json(path)
    if record.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} file")
    return {k: float(record[k]) for k in AUTO_KEYS if k in record}


def with_thresholds(settings: dict, keys, path=None) -> dict:
    """``settings`` with the thresholds of ``path`` (the rule's file) in place; each of ``keys`` must then be a
    number (without a file: given as one in the settings)."""
    settings = {**settings, **load_thresholds(path)} if path else dict(settings)
    auto = [k for k in keys if settings.get(k) == "auto"]
    if auto:
        where = f"{path} does not resolve them" if path else "give --thresholds (the file of python -m irn.thresholds)"
        raise ValueError(f"config keys {', '.join('irn.' + k for k in auto)} are auto: {where}")
    return settings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", required=True, help="seed index (wsss-index/1 of wsss-seed/1 npz files)")
    p.add_argument("--settings", required=True, help="the config section irn (its threshold keys), as JSON")
    p.add_argument("--keys", required=True, help=f"comma-separated thresholds to resolve, of {', '.join(AUTO_KEYS)}")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    settings = load_section("irn", a.settings)
    keys = [k for k in a.keys.split(",") if k]
    record = thresholds_record(settings, load_index(a.seeds).values(), keys)
    write_json_atomic(a.out, record)
    log.info("thresholds %s (auto: %s; median image-specific threshold %s over %d seeds)",
             {k: record[k] for k in keys}, record["auto"] or "none", record["image_threshold_median"],
             record["n_images"])


if __name__ == "__main__":
    main()
