"""Training data for BAS and the CAM baseline: ids + image-level labels, the two references' augmentations.

Every random choice of a sample comes from ``wsss_common.training.epoch_rng(seed, epoch, index)``, so a resumed run,
any number of loader workers and any number of DDP ranks see exactly the same crops and flips.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wsss_common.io import DataError, read_json
from wsss_common.training import epoch_rng
from wsss_common.voc import DecodedStore, load_image, load_label_cache, multi_hot

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize_hwc(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 HxWx3, ImageNet mean/std (as IRN's ``Normalize``)."""
    return (np.asarray(img, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def normalize(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 RGB -> float32 3xHxW tensor normalised with the ImageNet mean/std (both nets, train and export)."""
    return torch.from_numpy(np.ascontiguousarray(normalize_hwc(img).transpose(2, 0, 1)))


def resize_bicubic(img: np.ndarray, height: int, width: int) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BICUBIC))


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """BAS reference: a fixed size x size bicubic resize that ignores the aspect ratio."""
    return resize_bicubic(img, size, size)


def resize_long_side(img: np.ndarray, long_side: int) -> np.ndarray:
    """Aspect-preserving bicubic resize so that the longer side is ``long_side`` (IRN's ``pil_rescale`` rounding)."""
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    return resize_bicubic(img, max(1, round(h * scale)), max(1, round(w * scale)))


def random_crop(img: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """IRN's ``random_crop``: a crop x crop window at a random place; a side shorter than ``crop`` is placed at a
    random offset inside a zero canvas (zero = the mean colour after normalisation)."""
    h, w = img.shape[:2]
    out = np.zeros((crop, crop) + img.shape[2:], img.dtype)
    offsets = []
    for size in (h, w):
        if size > crop:
            offsets.append((0, int(rng.integers(size - crop + 1)), crop))
        else:
            offsets.append((int(rng.integers(crop - size + 1)), 0, size))
    (cy, iy, ch), (cx, ix, cw) = offsets
    out[cy:cy + ch, cx:cx + cw] = img[iy:iy + ch, ix:ix + cw]
    return out


def bas_augment(img: np.ndarray, rng: np.random.Generator, *, resize: int, crop: int,
                resize_mode: str = "square") -> torch.Tensor:
    """BAS reference: resize (square ``resize`` x ``resize``, or long side = ``resize`` with ``long_side``),
    normalise, random h-flip, random ``crop`` crop."""
    if resize_mode == "square":
        img = resize_square(img, resize)
    elif resize_mode == "long_side":
        img = resize_long_side(img, resize)
    else:
        raise ValueError(f"resize_mode must be 'square' or 'long_side', got {resize_mode!r}")
    x = normalize_hwc(img)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(random_crop(x, crop, rng).transpose(2, 0, 1)))


def cam_augment(img: np.ndarray, rng: np.random.Generator, *, resize_long: tuple[int, int],
                crop: int) -> torch.Tensor:
    """IRN CAM recipe: long side resized to a random integer in [lo, hi], normalise, random h-flip, random crop."""
    lo, hi = resize_long
    img = resize_long_side(img, int(rng.integers(lo, hi + 1)))
    x = normalize_hwc(img)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(random_crop(x, crop, rng).transpose(2, 0, 1)))


def load_training_labels(labels_path: str | Path, require_label: bool) -> tuple[list[str], dict[str, list[int]], int]:
    """(ids, labels, num_fg) from a label cache. With ``require_label`` ids without any foreground label are
    dropped (BAS needs a ground-truth class to pick M_f from); the CAM baseline keeps them as all-negative."""
    labels = load_label_cache(labels_path)
    class_names = read_json(labels_path).get("class_names")
    if not isinstance(class_names, list) or len(class_names) < 2:
        raise DataError(f"{labels_path}: class_names must list background and at least one class")
    num_fg = len(class_names) - 1
    for image_id, classes in labels.items():
        bad = [c for c in classes if not 1 <= c <= num_fg]
        if bad:
            raise DataError(f"{labels_path}: id {image_id} has class ids {bad} outside 1..{num_fg}")
    ids = [i for i in labels if labels[i] or not require_label]
    if not ids:
        raise DataError(f"{labels_path}: no image with a foreground label to train on")
    return ids, labels, num_fg


class ClassificationDataset(torch.utils.data.Dataset):
    """(image tensor, multi-hot label) pairs; ``augment(img_uint8, rng) -> tensor`` with rng from epoch_rng.
    ``cache_images``: decode every image once, here, and keep it in memory (``DecodedStore``)."""

    def __init__(self, voc_root: str | Path, ids: list[str], labels: dict[str, list[int]], num_fg: int,
                 augment, seed: int, cache_images: bool = False):
        self.voc_root = voc_root
        self.ids = list(ids)
        self.images = DecodedStore(partial(load_image, voc_root), self.ids, keep=cache_images)
        self.labels = labels
        self.num_fg = num_fg
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        rng = epoch_rng(self.seed, self.epoch, index)
        img = self.augment(self.images(image_id), rng)
        return img, torch.from_numpy(multi_hot(self.labels[image_id], self.num_fg + 1))


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[list[int]]:
    """This rank's batches of one epoch: a shuffle from epoch_rng(seed, epoch), split round-robin over ranks,
    per-rank batches of ``batch_size``, incomplete last batch dropped (IRN/BAS ``drop_last``)."""
    order = epoch_rng(seed, epoch).permutation(num_items)
    per_rank = num_items // world_size
    mine = order[rank::world_size][:per_rank]
    steps = len(mine) // batch_size
    return [mine[s * batch_size:(s + 1) * batch_size].tolist() for s in range(steps)]
