"""Per-class weights of the segmenter's cross-entropy (config key ``segment.class_weight``), from the pseudo masks the
segmenter trains on, never the ground truth.

``median_frequency`` is median frequency balancing (Eigen & Fergus, ICCV 2015): with f_c = the pixels of class c
over all pixels of the images where c is present, w_c = median(f) / f_c. A class that covers less of its images (a
thin object, one the masks under-cover) weighs more; background, most of every image, weighs less. Ignored pixels
(255) count nowhere. A class absent from every mask gets weight 1 (it has no pixel to weigh) and stays out of the
median.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

IGNORE_INDEX = 255


def class_pixel_counts(masks: Iterable[np.ndarray], num_classes: int,
                       ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, labelled pixels of the images holding that class), both of length ``num_classes``.
    A label outside 0..num_classes-1 other than ``ignore_index`` is an error."""
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for mask in masks:
        counts = np.bincount(np.asarray(mask, np.int64).ravel(), minlength=max(num_classes, ignore_index + 1))
        counts[ignore_index] = 0
        if counts[num_classes:].any():
            bad = int(np.flatnonzero(counts[num_classes:])[0]) + num_classes
            raise ValueError(f"mask label {bad} is not a class id (0..{num_classes - 1}) nor {ignore_index}")
        counts = counts[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += counts.sum()
    return pixels, image_pixels


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """w_c = median(f) / f_c with f_c = pixels[c] / image_pixels[c]; 1 for a class with no pixel."""
    pixels, image_pixels = np.asarray(pixels, np.float64), np.asarray(image_pixels, np.float64)
    present = pixels > 0
    if not present.any():
        raise ValueError("no labelled pixel in the masks: class weights are undefined")
    freq = np.divide(pixels, image_pixels, out=np.zeros_like(pixels), where=present)
    weights = np.ones_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights


def resolve_class_weight(setting, index_file: str | Path, num_classes: int) -> list[float] | None:
    """The loss's class weights for the setting: None (unweighted), a list as given (one per class), or
    ``median_frequency`` computed from the masks listed in ``index_file`` (a wsss-index/1 of label PNGs)."""
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting != "median_frequency":
            raise ValueError(f"config key segment.class_weight: unknown method {setting!r} (median_frequency)")
        from wsss_common.io import load_label_png
        from wsss_common.shards import load_index

        masks = (load_label_png(path) for path in load_index(index_file).values())
        try:
            pixels, image_pixels = class_pixel_counts(masks, num_classes)
        except ValueError as e:
            raise ValueError(f"pseudo masks of {index_file}: {e}") from None
        return [round(float(w), 6) for w in median_frequency_weights(pixels, image_pixels)]
    weights = [float(w) for w in setting]
    if len(weights) != num_classes:
        raise ValueError(f"config key segment.class_weight lists {len(weights)} weights for {num_classes} classes "
                         "(data.class_names, background first)")
    return weights
