"""Prediction with a trained model: loading model.pth, class probabilities of one image (optional extra test scales
and flip on top of the model's own MSC fusion), and the dense-CRF post-processing of deeplab-pytorch."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from wsss_common.io import DataError, load_torch_file


def load_trained_model(path: str | Path, device):
    """The segmentor described by the config stored in model.pth, with its trained weights, in eval mode."""
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    import segment.registry_modules  # noqa: F401

    path = Path(path)
    ckpt = load_torch_file(path, "trained model")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt.get("meta", {}):
        raise DataError(f"{path} is not a model written by segment.train (no meta.config / state_dict)")
    cfg = Config.fromstring(ckpt["meta"]["config"], file_format=".py")
    model = MODELS.build(cfg.model)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.to(device).eval()


def image_to_input(rgb: np.ndarray, model, device):
    """HxWx3 uint8 RGB -> 1x3xHxW float tensor normalised as the model's data preprocessor does (BGR for caffe)."""
    import torch

    pre = model.data_preprocessor
    x = torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1).float()
    if not getattr(pre, "_channel_conversion", False):  # bgr_to_rgb False: the model expects BGR like cv2 reads
        x = x[[2, 1, 0]]
    x = (x.to(pre.mean.device) - pre.mean) / pre.std
    return x[None].to(device)


def class_probabilities(model, x, scales: Sequence[float] = (1.0,), flip: bool = False):
    """C x H x W softmax probabilities at the input size: for each test scale (and its flip), the model's logits
    (max-fused over its MSC pyramid when its config says so) bilinearly upsampled to the input size, softmaxed, and
    averaged. ``scales=(1.0,), flip=False`` is deeplab-pytorch's test."""
    import torch
    import torch.nn.functional as F

    h, w = x.shape[2:]
    total = None
    with torch.no_grad():
        for s in scales:
            xs = x if s == 1.0 else F.interpolate(x, size=(max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))),
                                                  mode="bilinear", align_corners=False)
            for flipped in ((False, True) if flip else (False,)):
                inp = xs.flip(-1) if flipped else xs
                logits = model(inp, mode="tensor")
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
                if flipped:
                    logits = logits.flip(-1)
                probs = logits.softmax(1)
                total = probs if total is None else total + probs
    n = len(scales) * (2 if flip else 1)
    return (total / n)[0].float().cpu().numpy()


def dense_crf(rgb: np.ndarray, probs: np.ndarray, *, iterations: int = 10, gaussian_sxy: float = 1,
              gaussian_weight: float = 3, bilateral_sxy: float = 67, bilateral_srgb: float = 3,
              bilateral_weight: float = 4) -> np.ndarray:
    """Fully connected CRF on softmax probabilities (deeplab-pytorch's DenseCRF: unary -log p, a Gaussian kernel
    and a bilateral kernel on the image colours); returns the C x H x W marginals."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"image {rgb.shape[:2]} and probabilities {(h, w)} differ in size")
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_weight)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=np.array(rgb, np.uint8, order="C"),
                             compat=bilateral_weight)
    return np.asarray(crf.inference(iterations), np.float32).reshape(c, h, w)


def predict_label_map(model, rgb: np.ndarray, device, predict_settings: dict) -> np.ndarray:
    """HxW uint8 class ids of one RGB image under the ``segment.predict`` settings (scales, flip, CRF)."""
    probs = class_probabilities(model, image_to_input(rgb, model, device), predict_settings["scales"],
                                predict_settings["flip"])
    crf = predict_settings["crf"]
    if crf["enabled"]:
        probs = dense_crf(rgb, probs, **{k: v for k, v in crf.items() if k != "enabled"})
    return probs.argmax(0).astype(np.uint8)
