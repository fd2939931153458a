"""Inter-pixel relation (IR) labels from the seeds: two dense-CRF passes at a confident-foreground and a
confident-background threshold (IRN ``cam_to_ir_label``).

A seed map becomes hard labels by ``argmax([t, maps...])`` (index 0 = background, k = the k-th key); each labelling
is refined by a dense CRF on the RGB image; the two results combine into 0 (background in both passes = confident
background), the class id (foreground in the fg pass) or 255 (background only in the fg pass = unsure).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wsss_common.io import DataError, load_npz

IGNORE = 255
SEED_FORMAT = "wsss-seed/1"

# The CRF parameters have no defaults here: their one source is the schema (irn.crf in
# workflow/schemas/irn.schema.yaml, IRN imutils.crf_inference_label's hard-label unary 0.7, Gaussian (sxy 3,
# compat 3), bilateral (50, 5, 10), 10 iterations); get them with wsss_common.config.load_section("irn", ...)["crf"].


def load_seed(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a ``wsss-seed/1`` file; a malformed file raises DataError naming it."""
    seed = load_npz(path)
    need = ("format", "keys", "cam", "high_res", "image_size")
    missing = [k for k in need if k not in seed]
    if missing:
        raise DataError(f"seed file {path} lacks keys {missing}")
    if str(seed["format"]) != SEED_FORMAT:
        raise DataError(f"seed file {path} has format {str(seed['format'])!r}, expected {SEED_FORMAT!r}")
    keys, cam, high_res = seed["keys"], seed["cam"], seed["high_res"]
    height, width = (int(v) for v in seed["image_size"])
    if keys.ndim != 1 or (keys.size and (keys.min() < 1 or np.any(np.diff(keys) <= 0))):
        raise DataError(f"seed file {path}: keys must be ascending foreground ids >= 1, got {keys.tolist()}")
    if high_res.shape != (keys.size, height, width):
        raise DataError(f"seed file {path}: high_res has shape {high_res.shape}, expected "
                        f"{(keys.size, height, width)}")
    stride4 = (keys.size, -(-height // 4), -(-width // 4))
    if cam.shape != stride4:
        raise DataError(f"seed file {path}: cam has shape {cam.shape}, expected {stride4}")
    if not (np.all(np.isfinite(cam)) and np.all(np.isfinite(high_res))):
        raise DataError(f"seed file {path}: maps contain NaN or infinite values")
    return seed


def threshold_labels(maps: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over [background plane = threshold, maps...]: HxW int indices 0..K (0 = background)."""
    planes = np.concatenate([np.full((1, *maps.shape[1:]), threshold, maps.dtype), maps], axis=0)
    return np.argmax(planes, axis=0)


PAIRWISE_KEYS = ("gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat")


def dense_crf(image: np.ndarray, n_labels: int, *, gaussian_sxy: float, gaussian_compat: float,
              bilateral_sxy: float, bilateral_srgb: float, bilateral_compat: float):
    """The pairwise part of IRN's dense CRF on one RGB image (HxWx3 uint8): the Gaussian and bilateral kernels
    (keys ``PAIRWISE_KEYS`` of irn.crf). Building the bilateral lattice is most of a pass's cost and depends on the
    image alone, so the two passes of an image share one (``ir_label_from_seed``)."""
    import pydensecrf.densecrf as dcrf

    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb,
                             rgbim=np.array(image, dtype=np.uint8, order="C"), compat=bilateral_compat)  # writable copy
    return crf


def crf_inference_label(image: np.ndarray, labels: np.ndarray, n_labels: int, *, iterations: int, gt_prob: float,
                        crf=None, **pairwise) -> np.ndarray:
    """Dense CRF on hard labels 0..n_labels-1 (every value a real label: zero_unsure=False); HxW int64 argmax.
    The keyword arguments are the keys of config section irn.crf. ``crf``: a ``dense_crf`` of this image and label
    count to run instead of building one from ``pairwise``; pydensecrf's inference restarts from the unary on every
    call, so a reused one gives the same labels as a new one (tested)."""
    from pydensecrf.utils import unary_from_labels

    height, width = labels.shape
    if image.shape != (height, width, 3):
        raise ValueError(f"image shape {image.shape} does not match label map {labels.shape}")
    if crf is None:
        crf = dense_crf(image, n_labels, **pairwise)
    crf.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    q = np.asarray(crf.inference(iterations)).reshape(n_labels, height, width)
    return np.argmax(q, axis=0)


def combine_passes(fg_pass: np.ndarray, bg_pass: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """IRN's rule on two index maps (0 = background, k = keys[k-1]): start from the fg pass mapped to class ids,
    background in the fg pass -> 255, background in both passes -> 0. Returns HxW uint8."""
    class_of_index = np.concatenate([[0], np.asarray(keys, np.int64)])
    labels = class_of_index[fg_pass]
    labels[fg_pass == 0] = IGNORE
    labels[(fg_pass == 0) & (bg_pass == 0)] = 0
    return labels.astype(np.uint8)


def ir_label_from_seed(image: np.ndarray, high_res: np.ndarray, keys: np.ndarray, *, fg_threshold: float,
                       bg_threshold: float, crf: dict) -> np.ndarray:
    """The IR label map (uint8: 0 confident bg, class id, 255 unsure) of one image from its full-resolution seeds.
    ``crf``: the config section irn.crf, complete (``load_section("irn", ...)["crf"]``)."""
    n_labels = len(keys) + 1
    if image.shape[:2] != high_res.shape[1:]:
        raise ValueError(f"image {image.shape[:2]} and seed maps {high_res.shape[1:]} differ in size")
    if n_labels == 1:  # no foreground label: background in both passes
        return np.zeros(image.shape[:2], np.uint8)
    shared = dense_crf(image, n_labels, **{k: crf[k] for k in PAIRWISE_KEYS})  # one lattice, both passes
    unary = {"iterations": crf["iterations"], "gt_prob": crf["gt_prob"], "crf": shared}
    fg_pass = crf_inference_label(image, threshold_labels(high_res, fg_threshold), n_labels, **unary)
    bg_pass = crf_inference_label(image, threshold_labels(high_res, bg_threshold), n_labels, **unary)
    return combine_passes(fg_pass, bg_pass, keys)
