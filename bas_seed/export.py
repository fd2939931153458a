"""Seed export (bas_irn_facts.md §1.4, paper §5.5):
``python -m bas_seed.export --voc-root R --labels LABELS_JSON --model CKPT [--cam-model CKPT] --settings JSON
--out-dir DIR --shard i --num-shards N --device D``.

For every id of the label cache in this shard: multi-scale + flip inference of the model's localization maps (the sum
of the map and the flipped map of the flipped image, summed over scales), upsampled to the two resolutions of the
reference ("cam": ceil(H/4) x ceil(W/4); "high_res": ceil(H/16)*16 x ceil(W/16)*16 cropped to H x W), only the
image's ground-truth classes, per-class max-norm (+1e-5, no min subtraction); then optionally fused with the
class-agnostic foreground map and/or the CAM baseline's maps (bas_seed.fusion), and the image-specific threshold
searched (bas_seed.threshold). One ``wsss-seed/1`` npz per image (docs/DEVELOPING.md), written atomically.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsss_common.config import load_section
from wsss_common.devices import select_device, set_threads
from wsss_common.io import DataError, load_npz, save_npz_atomic, write_json_atomic
from wsss_common.shards import shard_ids
from wsss_common.voc import load_image, load_label_cache

from .data import normalize
from .fusion import fuse_foreground, fuse_with_cam, max_normalize
from .threshold import search_threshold, threshold_grid

SEED_FORMAT = "wsss-seed/1"
log = logging.getLogger("bas_seed.export")


# ---- settings ---------------------------------------------------------------------------------------------------

def _require(settings: dict, key: str):
    if key not in settings:
        raise KeyError(f"settings key seeds.{key} is missing (configs/*.yaml, workflow/schemas/seeds.schema.yaml)")
    return settings[key]


def search_grid(settings: dict) -> np.ndarray | None:
    """The threshold grid of the image-specific search, or None when ``seeds.threshold_search.enabled`` is false."""
    search = _require(settings, "threshold_search")
    if not search["enabled"]:
        return None
    return threshold_grid(search["start"], search["stop"], search["step"])


# ---- inference --------------------------------------------------------------------------------------------------

def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """PIL bicubic rescale to (round(H*s), round(W*s)), as IRN's ``pil_rescale``; scale 1 returns the image."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def strided_size(h: int, w: int, stride: int = 4) -> tuple[int, int]:
    return math.ceil(h / stride), math.ceil(w / stride)


def strided_up_size(h: int, w: int, stride: int = 16) -> tuple[int, int]:
    return math.ceil(h / stride) * stride, math.ceil(w / stride) * stride


@torch.no_grad()
def flip_summed_maps(model, image: np.ndarray, channels: torch.Tensor, device, keep_features: bool = False):
    """Maps of ``channels`` for the image and its horizontal flip, summed (flip undone): (len(channels), h, w).

    With ``keep_features`` (a BASNet) also returns the layer3 features of the unflipped image (C3, h, w), taken
    from the same pass; otherwise None.
    """
    x = normalize(image).to(device)
    pair = torch.stack([x, x.flip(-1)])
    if keep_features and hasattr(model, "generate"):
        x3 = model.extract(pair)
        maps = model.generate(x3)
        features = x3[0]
    else:
        maps = model.localization_maps(pair)
        features = model.extract(pair[:1])[0] if keep_features else None
    maps = maps[:, channels]
    return maps[0] + maps[1].flip(-1), features


@torch.no_grad()
def multiscale_maps(model, image: np.ndarray, scales, channels: torch.Tensor, device, keep_features: bool = False):
    """Sum over scales of the flip-summed maps at the two output resolutions: (cam, high_res, x3).

    cam: (K, ceil(H/4), ceil(W/4)); high_res: (K, H, W), via ceil(H/16)*16 x ceil(W/16)*16 then cropped; both by
    bilinear upsampling (align_corners=False) of each scale's map. x3: the layer3 features of the unflipped
    scale-1.0 image when ``keep_features``, else None.
    """
    h, w = image.shape[:2]
    cam = high_res = x3 = None
    for scale in scales:
        want = keep_features and scale == 1.0 and x3 is None
        maps, features = flip_summed_maps(model, rescale_image(image, scale), channels, device, keep_features=want)
        if want:
            x3 = features
        small = F.interpolate(maps.unsqueeze(0), strided_size(h, w), mode="bilinear", align_corners=False)[0]
        full = F.interpolate(maps.unsqueeze(0), strided_up_size(h, w), mode="bilinear",
                             align_corners=False)[0, :, :h, :w]
        cam = small if cam is None else cam + small
        high_res = full if high_res is None else high_res + full
    if keep_features and x3 is None:  # 1.0 not among the scales: one extra extractor pass at scale 1
        x3 = model.extract(normalize(image).to(device).unsqueeze(0))[0]
    return cam, high_res, x3


@torch.no_grad()
def seed_maps(model, image: np.ndarray, class_ids: list[int], settings: dict, device, cam_model=None,
              keep_features: bool = False, keep_variants: bool = False):
    """Max-normalised (and fused) maps of the image's classes: (cam (K, h4, w4), high_res (K, H, W), x3 | None,
    variants).

    ``variants`` (with ``keep_variants``, else {}): the full-resolution maps of the steps before each fusion, so
    that the seed evaluation can report them beside the final seed: ``bas_class_specific`` (the class-specific BAS
    maps alone, Table 6/9 "Ours") when any fusion is on, and ``bas_foreground`` (BAS with the class-agnostic fusion,
    Table 13) when both fusions are on.
    """
    fusion = _require(settings, "foreground_fusion")
    scales = [float(s) for s in _require(settings, "scales")]
    channels = [c - 1 for c in class_ids]
    if fusion != "none":
        if not getattr(model, "class_agnostic", False):
            raise ValueError(f"seeds.foreground_fusion is {fusion!r} but the model has no class-agnostic map "
                             "(train it with bas.class_agnostic: true, or set seeds.foreground_fusion: none)")
        channels = channels + [model.num_fg]  # the class-agnostic map is the last channel of model.generate
    index = torch.tensor(channels, dtype=torch.long, device=device)
    cam, high_res, x3 = multiscale_maps(model, image, scales, index, device, keep_features)
    cam, high_res = max_normalize(cam), max_normalize(high_res)
    variants = {}
    if fusion != "none":
        if keep_variants:
            variants["bas_class_specific"] = high_res[:-1]
        renorm = bool(_require(settings, "foreground_renormalize"))
        cam = fuse_foreground(cam[:-1], cam[-1], fusion, renorm)
        high_res = fuse_foreground(high_res[:-1], high_res[-1], fusion, renorm)
    if cam_model is not None:
        if keep_variants:
            variants["bas_foreground" if fusion != "none" else "bas_class_specific"] = high_res
        index = torch.tensor([c - 1 for c in class_ids], dtype=torch.long, device=device)
        cam_b, high_b, _ = multiscale_maps(cam_model, image, scales, index, device)
        cam = fuse_with_cam(cam, cam_b)
        high_res = fuse_with_cam(high_res, high_b)
    return cam, high_res, x3, variants


def seed_record(class_ids: list[int], cam: torch.Tensor, high_res: torch.Tensor, threshold: float,
                image_size: tuple[int, int], variants: dict | None = None) -> dict[str, np.ndarray]:
    """The arrays of one ``wsss-seed/1`` file (see docs/DEVELOPING.md); each variant as ``variant_<name>``."""
    record = {"format": np.asarray(SEED_FORMAT), "keys": np.asarray(class_ids, np.int64).reshape(-1),
              "cam": cam.float().cpu().numpy(), "high_res": high_res.float().cpu().numpy(),
              "threshold": np.float32(threshold), "image_size": np.asarray(image_size, np.int64)}
    for name, maps in (variants or {}).items():
        record[f"variant_{name}"] = maps.float().cpu().numpy()
    return record


def load_seed(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a ``wsss-seed/1`` file; a malformed one raises DataError naming the file."""
    seed = load_npz(path)
    missing = {"format", "keys", "cam", "high_res", "threshold", "image_size"} - set(seed)
    if missing:
        raise DataError(f"{path}: not a {SEED_FORMAT} file (missing {sorted(missing)})")
    if str(seed["format"]) != SEED_FORMAT:
        raise DataError(f"{path}: format {str(seed['format'])!r}, expected {SEED_FORMAT!r}")
    k = seed["keys"].shape[0]
    h, w = (int(v) for v in seed["image_size"])
    bad_variant = [n for n in seed if n.startswith("variant_") and seed[n].shape != (k, h, w)]
    if seed["high_res"].shape != (k, h, w) or seed["cam"].shape != (k, *strided_size(h, w)) or bad_variant:
        raise DataError(f"{path}: shapes keys {seed['keys'].shape}, cam {seed['cam'].shape}, high_res "
                        f"{seed['high_res'].shape} do not fit image_size {(h, w)}")
    return seed


# ---- CLI --------------------------------------------------------------------------------------------------------

def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--labels", required=True, help="label cache JSON of the split to export (train_aug)")
    p.add_argument("--model", required=True, help="checkpoint of bas_seed.train (method bas or cam)")
    p.add_argument("--cam-model", help="CAM baseline checkpoint, needed iff seeds.fuse_cam")
    p.add_argument("--settings", required=True, help="config section seeds, as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--eval-labels", help="label cache JSON of the evaluation split: the seeds of its ids also keep "
                   "the maps before each fusion (for the seed report); with seeds.threshold_search.scope eval_split "
                   "only they get a searched threshold (the others NaN)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--timing", help="optional JSON file for the seconds spent on maps and on the threshold search")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    from tqdm import tqdm

    from .model import load_model

    settings = load_section("seeds", a.settings)
    if bool(_require(settings, "fuse_cam")) != bool(a.cam_model):
        raise SystemExit("seeds.fuse_cam and --cam-model must go together: "
                         f"fuse_cam={settings['fuse_cam']}, --cam-model={a.cam_model!r}")
    set_threads(a.threads)
    device = select_device(a.device)
    model = load_model(a.model).to(device)
    cam_model = load_model(a.cam_model).to(device) if a.cam_model else None
    if cam_model is not None and cam_model.num_fg != model.num_fg:
        raise SystemExit(f"{a.cam_model} has {cam_model.num_fg} classes, {a.model} has {model.num_fg}")
    grid = search_grid(settings)
    search = settings["threshold_search"]
    labels = load_label_cache(a.labels)
    eval_ids = set(load_label_cache(a.eval_labels)) if a.eval_labels else set()
    if search["scope"] == "eval_split" and not a.eval_labels:
        raise SystemExit("seeds.threshold_search.scope is eval_split: --eval-labels is required")
    search_ids = eval_ids if search["scope"] == "eval_split" else set(labels)
    ids = shard_ids(list(labels), a.shard, a.num_shards)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("shard %d/%d: %d images, scales %s, fusion %s, fuse_cam %s, threshold search %s", a.shard,
             a.num_shards, len(ids), settings["scales"], settings["foreground_fusion"], settings["fuse_cam"],
             "off" if grid is None else f"{len(grid)} thresholds on {len(search_ids.intersection(ids))} images")
    map_seconds = search_seconds = 0.0
    for image_id in tqdm(ids, desc=f"export shard {a.shard}", mininterval=10, file=sys.stderr):
        class_ids = labels[image_id]
        bad = [c for c in class_ids if not 1 <= c <= model.num_fg]
        if bad:
            raise DataError(f"{a.labels}: {image_id} has class ids {bad}, the model knows 1..{model.num_fg}")
        image = load_image(a.voc_root, image_id)
        h, w = image.shape[:2]
        threshold = float("nan")
        searched = grid is not None and image_id in search_ids
        if class_ids:
            start = time.perf_counter()
            cam, high_res, x3, variants = seed_maps(model, image, class_ids, settings, device, cam_model,
                                                    keep_features=searched, keep_variants=image_id in eval_ids)
            high_res = high_res.float()
            mid = time.perf_counter()
            if searched:
                channels = torch.tensor([c - 1 for c in class_ids], dtype=torch.long, device=device)
                threshold, _ = search_threshold(model.classify, x3, high_res, channels, grid,
                                                ac_weight=search["ac_weight"], chunk=search["chunk"])
            map_seconds += mid - start
            search_seconds += time.perf_counter() - mid
        else:  # no foreground label: an empty seed (every pixel background)
            cam, high_res, variants = torch.zeros(0, *strided_size(h, w)), torch.zeros(0, h, w), {}
        save_npz_atomic(out_dir / f"{image_id}.npz",
                        **seed_record(class_ids, cam, high_res, threshold, (h, w), variants))
    log.info("done: maps %.1f s, threshold search %.1f s (%.2fx of the maps)", map_seconds, search_seconds,
             search_seconds / map_seconds if map_seconds else float("nan"))
    if a.timing:
        write_json_atomic(a.timing, {"n_images": len(ids), "map_seconds": map_seconds,
                                     "search_seconds": search_seconds, "device": str(device)})


if __name__ == "__main__":
    main()
