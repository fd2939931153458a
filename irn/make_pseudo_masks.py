"""Pseudo masks of one shard of a split (IRN ``make_sem_seg_labels``):
``python -m irn.make_pseudo_masks --voc-root R --seeds SEED_INDEX --model MODEL --labels LABELS_JSON --out-dir DIR
--shard i --num-shards N --settings JSON [--device auto]``.

Per image: boundary map from the flip pair (sigmoid of the averaged logits) -> random walk of the stride-4 seed
maps raised to ``seed_power`` -> bilinear x4, crop to the image -> divide by the global max -> background plane
``sem_seg_bg_threshold`` -> argmax -> class ids. Writes DIR/<id>.png (palette, 0..C-1) at full resolution.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from irn.data import image_tensor
from irn.ir_labels import load_seed
from irn.model import IRNet, boundary_map
from irn.random_walk import random_walk, walk_to_label_indices
from irn.train import load_model
from irn.thresholds import with_thresholds
from wsss_common.config import load_section
from wsss_common.devices import select_device, set_threads
from wsss_common.io import DataError, save_label_png
from wsss_common.shards import load_index, shard_ids
from wsss_common.voc import load_image, load_label_cache

log = logging.getLogger("irn.make_pseudo_masks")


def labels_from_walk(walked: torch.Tensor, keys: np.ndarray, image_size: tuple[int, int],
                     bg_threshold: float) -> np.ndarray:
    """K x h x w walked maps -> H x W uint8 class ids: the reference post-processing
    (``walk_to_label_indices``) mapped through [0, *keys]."""
    if walked.shape[0] == 0:
        return np.zeros(image_size, np.uint8)
    index = walk_to_label_indices(walked.float(), image_size, bg_threshold).cpu().numpy()
    return np.concatenate([[0], np.asarray(keys, np.int64)])[index].astype(np.uint8)


def pseudo_mask(model: IRNet, image: np.ndarray, seed: dict, settings: dict, device: torch.device) -> np.ndarray:
    height, width = image.shape[:2]
    boundary = boundary_map(model, image_tensor(image).to(device), pad_to=settings["infer_pad_size"],
                            flip=settings["infer_flip"])
    cams = torch.from_numpy(seed["cam"]).to(device).float() ** settings["seed_power"]
    if cams.shape[0] == 0:
        return np.zeros((height, width), np.uint8)
    walked = random_walk(cams, boundary, radius=settings["rw_radius"], beta=settings["beta"],
                         exp_times=settings["exp_times"])
    return labels_from_walk(walked, seed["keys"], (height, width), settings["sem_seg_bg_threshold"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--seeds", required=True, help="seed index (wsss-index/1 of wsss-seed/1 npz files)")
    p.add_argument("--model", required=True, help="checkpoint written by irn.train")
    p.add_argument("--labels", required=True, help="label cache of the split to label (its ids are used)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--settings", required=True, help="the config section irn, as JSON")
    p.add_argument("--thresholds", help="resolved thresholds (python -m irn.thresholds), needed when one is auto")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    set_threads(a.threads)
    settings = load_section("irn", a.settings)  # validated against irn.schema.yaml, every default filled
    thresholds = ("sem_seg_bg_threshold",)
    settings = with_thresholds(settings, thresholds, a.thresholds)  # auto replaced by the resolved numbers
    log.info("%s", ", ".join(f"{k} {settings[k]}" for k in thresholds))
    device = select_device(a.device)
    seeds = load_index(a.seeds)
    ids = shard_ids(list(load_label_cache(a.labels)), a.shard, a.num_shards)
    missing = [i for i in ids if i not in seeds]
    if missing:
        raise DataError(f"{len(missing)} ids of {a.labels} have no seed in {a.seeds}, e.g. {missing[:5]}")
    model = load_model(a.model, device)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image_id in tqdm(ids, desc=f"pseudo masks shard {a.shard}", mininterval=5):
        seed = load_seed(seeds[image_id])
        image = load_image(a.voc_root, image_id)
        if image.shape[:2] != seed["high_res"].shape[1:]:
            raise DataError(f"seed file {seeds[image_id]} is {seed['high_res'].shape[1:]}, image {image_id} is "
                            f"{image.shape[:2]}")
        save_label_png(out_dir / f"{image_id}.png", pseudo_mask(model, image, seed, settings, device))
    log.info("%d pseudo masks in %s", len(ids), out_dir)


if __name__ == "__main__":
    main()
