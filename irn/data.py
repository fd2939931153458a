"""IRN training data (IRN ``VOC12AffinityDataset``): image + IR label, random scale (image bicubic, label nearest),
ImageNet normalisation, random horizontal flip, random crop (image padded with 0, label with 255), and the label
reduced to stride 4 with PIL nearest at 0.25x. Randomness comes from ``wsss_common.training.epoch_rng`` only, so a
resumed run sees the same samples."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wsss_common.io import DataError, load_label_png
from wsss_common.training import epoch_rng
from wsss_common.voc import DecodedStore, load_image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
IGNORE = 255


def normalize(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxWx3 float32, (x / 255 - mean) / std (IRN ``Normalize``)."""
    return (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """Normalised CHW float tensor of an HxWx3 uint8 image (inference input)."""
    return torch.from_numpy(np.ascontiguousarray(normalize(image).transpose(2, 0, 1)))


def pil_resize(array: np.ndarray, size_hw: tuple[int, int], resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((size_hw[1], size_hw[0]), resample))


def rescale(array: np.ndarray, scale: float, resample: int) -> np.ndarray:
    """PIL resize to (round(H * scale), round(W * scale)) (IRN ``pil_rescale``)."""
    height, width = array.shape[:2]
    return pil_resize(array, (int(np.round(height * scale)), int(np.round(width * scale))), resample)


def crop_boxes(size_hw: tuple[int, int], crop: int, rng: np.random.Generator) -> tuple[tuple[int, ...], ...]:
    """Per axis (container offset, image offset, length): a random window of an axis longer than the crop, or the
    whole axis placed at a random offset inside the crop container when it is shorter (IRN ``random_crop``)."""
    boxes = []
    for n in size_hw:
        space = n - crop
        if space > 0:
            boxes.append((0, int(rng.integers(space + 1)), crop))
        else:
            boxes.append((int(rng.integers(-space + 1)), 0, n))
    return tuple(boxes)


def random_crop(image: np.ndarray, label: np.ndarray, crop: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Crop (and pad) image (HxWx3 float) with 0 and label (HxW) with 255 to crop x crop."""
    (cy, iy, lh), (cx, ix, lw) = crop_boxes(image.shape[:2], crop, rng)
    image_out = np.zeros((crop, crop, 3), image.dtype)
    label_out = np.full((crop, crop), IGNORE, label.dtype)
    image_out[cy:cy + lh, cx:cx + lw] = image[iy:iy + lh, ix:ix + lw]
    label_out[cy:cy + lh, cx:cx + lw] = label[iy:iy + lh, ix:ix + lw]
    return image_out, label_out


def augment(image: np.ndarray, label: np.ndarray, *, crop: int, scale_range: tuple[float, float],
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, normalise, random flip, random crop; returns (3, crop, crop) float32 and the stride-4 label
    (crop/4 rounded, PIL nearest)."""
    scale = float(rng.uniform(*scale_range))
    image = rescale(image, scale, Image.BICUBIC)
    label = rescale(label, scale, Image.NEAREST)
    image = normalize(image)
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    image, label = random_crop(image, label, crop, rng)
    reduced = rescale(label, 0.25, Image.NEAREST)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), reduced


class IRLabelDataset(torch.utils.data.Dataset):
    """(image, stride-4 IR label) pairs of the ids of an IR-label index, augmented with (seed, epoch, index).
    ``cache_images``: decode every image and IR label once, here, and keep them in memory (``DecodedStore``)."""

    def __init__(self, voc_root: str | Path, label_paths: dict[str, str], *, crop: int,
                 scale_range: tuple[float, float], seed: int, cache_images: bool = False):
        if not label_paths:
            raise DataError("the IR label index lists no images")
        self.voc_root = voc_root
        self.ids = list(label_paths)
        self.label_paths = label_paths
        self.images = DecodedStore(partial(load_image, voc_root), self.ids, keep=cache_images)
        self.labels = DecodedStore(load_label_png, label_paths.values(), keep=cache_images)
        self.crop = crop
        self.scale_range = tuple(scale_range)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id = self.ids[index]
        image = self.images(image_id)
        label = self.labels(self.label_paths[image_id])
        if label.shape != image.shape[:2]:
            raise DataError(f"IR label {self.label_paths[image_id]} has shape {label.shape}, image {image_id} "
                            f"has {image.shape[:2]}")
        rng = epoch_rng(self.seed, self.epoch, index)
        image, reduced = augment(image, label, crop=self.crop, scale_range=self.scale_range, rng=rng)
        return torch.from_numpy(image), torch.from_numpy(reduced.astype(np.int64))
