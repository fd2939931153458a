"""Per-class max-normalisation and the two seed fusions: class-agnostic foreground map (paper §5.5, Table 13) and
the CAM baseline (the released make_cam's maxnorm(maxnorm(BAS) + maxnorm(CAM)), Table 9 "Ours + IRN").

All functions take torch tensors of shape (K, H, W) (one map per class; the foreground map is (H, W)) and are pure.
"""
from __future__ import annotations

import torch

FOREGROUND_FUSIONS = ("none", "replace", "average")
MAXNORM_EPS = 1e-5  # the reference's "+ 1e-5" in make_cam


def max_normalize(maps: torch.Tensor, eps: float = MAXNORM_EPS) -> torch.Tensor:
    """Divide each map by its own spatial maximum + eps (no min subtraction, as make_cam does).

    ``maps`` is (K, H, W) or (H, W). A map whose maximum is <= 0 is not rescaled upwards: the reference divides by
    max + eps regardless, which we keep.
    """
    if maps.dim() < 2:
        raise ValueError(f"max_normalize needs (..., H, W) maps, got shape {tuple(maps.shape)}")
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return maps / (peak + eps)


def fuse_foreground(class_maps: torch.Tensor, foreground: torch.Tensor, mode: str,
                    renormalize: bool = False) -> torch.Tensor:
    """Table 13: where a class map exceeds the class-agnostic foreground map, replace it by the foreground map
    (``replace``) or by the mean of both (``average``); elsewhere the class map is kept. ``none`` returns it unchanged.

    Both inputs must already be max-normalised (that is what makes their values comparable). By default the result
    is taken literally, as Table 13 describes it: it is *not* max-normalised again, which would scale back up the
    classes the fusion weakened (values stay in [0, 1]; a class's maximum may fall below 1). ``renormalize``
    (seeds.foreground_renormalize, a deviation) max-normalises each fused class map again.
    """
    if mode not in FOREGROUND_FUSIONS:
        raise ValueError(f"seeds.foreground_fusion must be one of {FOREGROUND_FUSIONS}, got {mode!r}")
    if mode == "none":
        return class_maps
    if foreground.shape != class_maps.shape[-2:]:
        raise ValueError(f"foreground map {tuple(foreground.shape)} does not match class maps "
                         f"{tuple(class_maps.shape)}")
    fg = foreground.unsqueeze(0).expand_as(class_maps)
    above = class_maps > fg
    if mode == "replace":
        fused = torch.where(above, fg, class_maps)
    else:
        fused = torch.where(above, (class_maps + fg) / 2, class_maps)
    return max_normalize(fused) if renormalize else fused


def fuse_with_cam(bas_maps: torch.Tensor, cam_maps: torch.Tensor) -> torch.Tensor:
    """maxnorm(maxnorm(BAS) + maxnorm(CAM)), per class, as the released make_cam (``if True:`` branch)."""
    if bas_maps.shape != cam_maps.shape:
        raise ValueError(f"BAS maps {tuple(bas_maps.shape)} and CAM maps {tuple(cam_maps.shape)} differ in shape")
    return max_normalize(max_normalize(bas_maps) + max_normalize(cam_maps))
