"""Training augmentation of deeplab-pytorch (``libs/datasets/base.py``, ``_BaseDataset._augmentation``) as mmseg
transforms: a random scale drawn from a discrete set, then padding up to the crop size; mmseg's ``RandomCrop`` and
``RandomFlip`` follow in the pipeline (configs/segment/deeplabv2_r101_msc.py), in the reference's order
scale -> pad -> crop -> flip.

mmcv's ``Resize`` does not do what the reference does: it rounds the new size (``int(x * s + 0.5)``) where the
reference truncates (``int(x * s)``), and it resizes the label with cv2's INTER_NEAREST (source pixel
``floor(x * in / out)``, corner-aligned) where the reference uses PIL's ``Image.NEAREST`` (centre-aligned), which picks
other label pixels. Padding in the data preprocessor (after the flip) would put a flipped image's padding on the
wrong side, so the pipeline pads before cropping, as the reference does.
"""
from __future__ import annotations

import random
from typing import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image

from mmseg.registry import TRANSFORMS


def truncated_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(h, w) scaled as the reference does: ``int(h * s), int(w * s)`` (truncation, not rounding). Deliberate
    change: at least 1 pixel (the reference's cv2.resize fails on a 0-pixel side; only for images under 1/s px)."""
    return max(1, int(h * scale)), max(1, int(w * scale))


def resize_label_pil_nearest(label: np.ndarray, h: int, w: int) -> np.ndarray:
    """An H x W integer label map resized to (h, w) with PIL's ``Image.NEAREST`` (the reference's label resize),
    keeping its dtype."""
    if label.shape[:2] == (h, w):
        return label
    resized = Image.fromarray(np.ascontiguousarray(label)).resize((w, h), resample=Image.Resampling.NEAREST)
    return np.asarray(resized, dtype=label.dtype)


@TRANSFORMS.register_module()
class DeepLabRandomScale(BaseTransform):
    """Rescale by a factor drawn with ``random.choice(scales)`` (Python's RNG, as the reference; the pseudo-mask
    dataset seeds it per sample): new size ``int(h * s), int(w * s)``, the image with cv2 ``INTER_LINEAR`` and every
    seg field with PIL ``NEAREST``. Updates ``img_shape``, ``scale`` (w, h), ``scale_factor`` (w, h ratios) and
    ``keep_ratio`` like mmcv's Resize."""

    def __init__(self, scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5)):
        scales = [float(s) for s in scales]
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"DeepLabRandomScale needs positive scales, got {scales}")
        self.scales = scales

    def transform(self, results: dict) -> dict:
        scale = random.choice(self.scales)
        img = results["img"]
        old_h, old_w = img.shape[:2]
        # the reference takes the size from the label; image and label have the same size (checked here)
        for key in results.get("seg_fields", []):
            if results[key].shape[:2] != (old_h, old_w):
                raise ValueError(f"{key} of {results.get('seg_map_path')} is {results[key].shape[:2]} but the image "
                                 f"{results.get('img_path')} is {(old_h, old_w)}")
        h, w = truncated_size(old_h, old_w, scale)
        if (h, w) != (old_h, old_w):
            results["img"] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            for key in results.get("seg_fields", []):
                results[key] = resize_label_pil_nearest(results[key], h, w)
        results["img_shape"] = (h, w)
        results["scale"] = (w, h)
        results["scale_factor"] = (w / old_w, h / old_h)
        results["keep_ratio"] = False
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(scales={self.scales})"


@TRANSFORMS.register_module()
class DeepLabPadToCrop(BaseTransform):
    """Pad at the bottom and right up to ``crop_size`` (h, w) where the image is smaller: the image with ``img_pad``
    (the mean colour, in the image's own channel order, so it is 0 after the preprocessor's mean subtraction) and
    every seg field with ``seg_pad`` (255, ignored). A side already at least the crop size is left as is."""

    def __init__(self, crop_size: int | Sequence[int] = (321, 321),
                 img_pad: Sequence[float] = (104.008, 116.669, 122.675), seg_pad: int = 255):
        crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"DeepLabPadToCrop crop_size must be one or two positive ints, got {crop_size}")
        self.crop_size = (int(crop[0]), int(crop[1]))
        self.img_pad = tuple(float(v) for v in img_pad)
        self.seg_pad = int(seg_pad)

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        pad_h, pad_w = max(self.crop_size[0] - h, 0), max(self.crop_size[1] - w, 0)
        if pad_h or pad_w:
            if img.ndim != 3 or img.shape[2] != len(self.img_pad):
                raise ValueError(f"DeepLabPadToCrop: image {results.get('img_path')} has shape {img.shape}, "
                                 f"img_pad has {len(self.img_pad)} channels")
            padded = np.empty((h + pad_h, w + pad_w, img.shape[2]), img.dtype)
            padded[...] = np.asarray(self.img_pad, np.float64).astype(img.dtype)
            padded[:h, :w] = img
            results["img"] = padded
            for key in results.get("seg_fields", []):
                seg = results[key]
                results[key] = np.pad(seg, ((0, pad_h), (0, pad_w)), constant_values=self.seg_pad)
        results["img_shape"] = results["img"].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(crop_size={self.crop_size}, img_pad={self.img_pad}, "
                f"seg_pad={self.seg_pad})")
