"""Image-specific background threshold chosen by the BAS losses (paper §5.5 "Finding image-specific threshold by BAS",
Fig. 22, Table 15). The released code has no such search; this is our reading of the paper, defined here.

For an image with K ground-truth classes, seed maps ``maps`` (K, H, W, the max-normalised maps that are stored as
``high_res``) and a grid of T thresholds t:

1. Label map per threshold, exactly as the seed is used downstream: ``argmax([t, maps...])`` (ties go to background,
   i.e. a pixel is foreground iff its best class value is > t). The binary mask of class k at threshold t, B[t, k],
   is "pixel labelled k". (Masks of different classes of one image therefore never overlap.)
2. Each mask is brought to the layer3 feature grid (h, w) of the scale-1.0 input by area averaging
   (``adaptive_avg_pool2d``), giving a soft mask M[t, k] in [0, 1] like the generator's sigmoid map in training.
3. AMC losses, as in training (bas_seed.losses), with the trained model's F2 (layer4 + classifier, eval-mode BN,
   weights frozen) on the layer3 features x3 of the unflipped scale-1.0 image:
       S       = relu(GAP(F2(x3))[c_k])                       full-image score of class k (not masked)
       S_b     = relu(GAP(F2(x3 * (1 - M[t, k])))[c_k])       background score
       L_bas   = S_b / (S + 1e-8), replaced by 1 where S_b > S
       L_ac    = mean(M[t, k])
4. Score of a threshold = mean over the image's K classes of (L_bas + ac_weight * L_ac), ac_weight = 1 being the
   paper's plain sum. The mean over classes is the expectation of the training loss, which draws one GT class per
   image at random. The chosen threshold is the grid value with the smallest score; ties go to the smallest threshold
   (the first minimum of the ascending grid).

All T*K masked feature maps go through F2 as one batch (``chunk`` > 0 splits that batch only to bound memory).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .losses import bas_ratio  # the training L_bas per item: the same function, not a copy

BAS_EPS = 1e-8  # the ε of eq. 3 / the reference's "+ 1e-8"


def threshold_grid(start: float, stop: float, step: float) -> np.ndarray:
    """Ascending thresholds start, start + step, ..., stop (inclusive), rounded to 6 decimals (0.20..0.44 by 0.01
    gives the 25 values of the BAS sweep)."""
    if not step > 0:
        raise ValueError(f"threshold step must be > 0, got {step}")
    if stop < start:
        raise ValueError(f"threshold grid stop {stop} is below start {start}")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 6)


def seed_labels(maps: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(T, H, W) int64 label indices 0..K of ``argmax([t, maps...])`` for every threshold t (0 = background)."""
    if maps.dim() != 3:
        raise ValueError(f"maps must be (K, H, W), got shape {tuple(maps.shape)}")
    best_value, best_index = maps.max(dim=0)  # first maximum on ties, like argmax
    fg = best_value.unsqueeze(0) > thresholds.to(maps.dtype).view(-1, 1, 1)
    return torch.where(fg, best_index.unsqueeze(0) + 1, torch.zeros_like(best_index).unsqueeze(0))


def class_masks(maps: torch.Tensor, thresholds: torch.Tensor, feature_size: tuple[int, int]) -> torch.Tensor:
    """(T, K, h, w) soft masks: for each threshold and class, the fraction of each feature cell labelled that class."""
    k = maps.shape[0]
    labels = seed_labels(maps, thresholds)  # (T, H, W)
    classes = torch.arange(1, k + 1, device=maps.device).view(1, k, 1, 1)
    binary = (labels.unsqueeze(1) == classes).to(maps.dtype)  # (T, K, H, W)
    return F.adaptive_avg_pool2d(binary, feature_size)


def gap_scores(classify: Callable[[torch.Tensor], torch.Tensor], x3: torch.Tensor) -> torch.Tensor:
    """GAP of F2's activation map: (B, C3, h, w) layer3 features -> (B, num_fg) logits."""
    return classify(x3).mean(dim=(2, 3))


@torch.no_grad()
def amc_losses(classify: Callable[[torch.Tensor], torch.Tensor], x3: torch.Tensor, channels: torch.Tensor,
               masks: torch.Tensor, chunk: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """L_bas and L_ac, each (T, K), of the soft masks ``masks`` (T, K, h, w) on one image's features ``x3``
    (C3, h, w); ``channels`` (K,) are the classifier channels of the image's classes (class id - 1)."""
    t, k, h, w = masks.shape
    if x3.dim() != 3 or x3.shape[1:] != (h, w):
        raise ValueError(f"features {tuple(x3.shape)} do not match masks {tuple(masks.shape)}")
    score_full = gap_scores(classify, x3.unsqueeze(0))[0, channels]  # (K,)
    keep = 1.0 - masks.reshape(t * k, 1, h, w)  # background map 1 - M_f of every (threshold, class)
    step = t * k if chunk <= 0 else chunk
    logits = torch.cat([gap_scores(classify, x3.unsqueeze(0) * keep[i:i + step]) for i in range(0, t * k, step)])
    score_background = logits.view(t, k, -1).gather(2, channels.view(1, k, 1).expand(t, k, 1)).squeeze(2)
    l_bas = bas_ratio(score_full.unsqueeze(0).expand(t, k), score_background, BAS_EPS)
    l_ac = masks.mean(dim=(2, 3))
    return l_bas, l_ac


def threshold_scores(l_bas: torch.Tensor, l_ac: torch.Tensor, ac_weight: float = 1.0) -> torch.Tensor:
    """(T,) score per threshold: mean over classes of L_bas + ac_weight * L_ac (see the module docstring)."""
    return (l_bas + ac_weight * l_ac).mean(dim=1)


def search_threshold(classify: Callable[[torch.Tensor], torch.Tensor], x3: torch.Tensor, maps: torch.Tensor,
                     channels: torch.Tensor, thresholds: np.ndarray, ac_weight: float = 1.0,
                     chunk: int = 0) -> tuple[float, np.ndarray]:
    """Chosen threshold (first minimum of the score) and the (T,) scores, for one image."""
    if maps.shape[0] != channels.numel():
        raise ValueError(f"{maps.shape[0]} maps but {channels.numel()} class channels")
    grid = torch.as_tensor(np.asarray(thresholds), dtype=maps.dtype, device=maps.device)
    masks = class_masks(maps, grid, tuple(x3.shape[1:]))
    l_bas, l_ac = amc_losses(classify, x3, channels, masks, chunk=chunk)
    scores = threshold_scores(l_bas, l_ac, ac_weight).double().cpu().numpy()
    return float(np.asarray(thresholds)[int(np.argmin(scores))]), scores
