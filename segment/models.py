"""DeepLabV2 expressed in mmsegmentation: the summed-ASPP head, the caffe ResNet with DeepLab's ceil-mode max-pool, and
a segmentor that trains and tests on multi-scale inputs (MSC) the way deeplab-pytorch does.

Everything here is registered in mmseg's ``MODELS`` registry, so a model is described by a config file
(``configs/segment/*.py``), never chosen by a code branch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from mmseg.models.backbones import ResNet
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

LABEL_RESIZE_MODES = ("nearest_to_logits", "upsample_logits")


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """DeepLabV2 ASPP: parallel 3x3 convs (with bias) at the given dilations, each mapping the backbone features
    straight to class logits; the branch outputs are summed (all of them, not only the first two)."""

    def __init__(self, dilations: Sequence[int] = (6, 12, 18, 24), **kwargs):
        kwargs.setdefault("channels", kwargs.get("in_channels"))
        kwargs.setdefault("dropout_ratio", 0.0)
        kwargs.setdefault("init_cfg", dict(type="Normal", std=0.01, bias=0.0, override=dict(name="aspp")))
        super().__init__(**kwargs)
        if not dilations:
            raise ValueError("DeepLabV2Head needs at least one dilation")
        self.dilations = tuple(int(d) for d in dilations)
        self.conv_seg = None  # the branches emit the logits themselves
        self.aspp = nn.ModuleList(
            nn.Conv2d(self.in_channels, self.out_channels, 3, padding=d, dilation=d, bias=True)
            for d in self.dilations)

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        return torch.stack([branch(x) for branch in self.aspp]).sum(0)


@MODELS.register_module()
class DeepLabResNet(ResNet):
    """mmseg's ResNet with the stem max-pool's ``ceil_mode`` configurable: the MSRA/caffe ResNet of DeepLab uses
    ``MaxPool2d(3, 2, 1, ceil_mode=True)`` (a 321 crop gives 41x41 logits, a 64 px input 9x9 ones)."""

    def __init__(self, maxpool_ceil_mode: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.maxpool.ceil_mode = bool(maxpool_ceil_mode)


def resize_labels_nearest(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """N x H x W integer labels resized to ``size`` (h, w) with PIL's ``Image.NEAREST``, as deeplab-pytorch's
    ``resize_labels`` does (each label as a float32 PIL image, on the CPU). Neither ``F.interpolate`` 'nearest'
    (corner-aligned) nor 'nearest-exact' reproduces it: PIL accumulates the source coordinate in steps of in/out,
    so where ``(x + 0.5) * in / out`` is an integer it can land on the pixel before (8 -> 6: PIL picks source
    pixels 0 2 3 4 5 7, 'nearest-exact' 0 2 3 4 6 7). Deliberate change: PIL gets (w, h); the reference passes its
    (H, W) as PIL's (width, height), the same thing for its square crops only."""
    h, w = (int(v) for v in size)
    if tuple(labels.shape[-2:]) == (h, w):
        return labels
    resized = [np.asarray(Image.fromarray(label.astype(np.float32)).resize((w, h), resample=Image.Resampling.NEAREST))
               for label in labels.detach().cpu().numpy()]
    return torch.from_numpy(np.stack(resized)).to(device=labels.device, dtype=labels.dtype)


@MODELS.register_module()
class MultiScaleInputEncoderDecoder(EncoderDecoder):
    """EncoderDecoder with deeplab-pytorch's MSC: the network also runs on the input bilinearly resized by each of
    ``msc_scales``; those logits are upsampled to the 1x logits and fused by a pixel-wise max.

    Training loss (as deeplab-pytorch): the sum, over the outputs [1x, each scale, max], of the decode head's loss,
    with ``label_resize='nearest_to_logits'`` computed at each output's own resolution on labels nearest-resized to
    it (the reference), or with ``'upsample_logits'`` on logits bilinearly upsampled to the label size (mmseg's
    convention). With ``msc_scales=()`` this is plain single-scale DeepLabV2 with the same loss convention.
    Testing returns the max-fused logits when ``msc_at_test`` (the reference), else the 1x logits.
    """

    def __init__(self, msc_scales: Sequence[float] = (0.5, 0.75), msc_at_test: bool = True,
                 label_resize: str = "nearest_to_logits", **kwargs):
        super().__init__(**kwargs)
        if label_resize not in LABEL_RESIZE_MODES:
            raise ValueError(f"label_resize must be one of {LABEL_RESIZE_MODES}, got {label_resize!r}")
        bad = [s for s in msc_scales if not 0 < float(s) < 1]
        if bad:
            raise ValueError(f"msc_scales must lie in (0, 1) (the 1x pass is always run), got {bad}")
        self.msc_scales = tuple(float(s) for s in msc_scales)
        self.msc_at_test = bool(msc_at_test)
        self.label_resize = label_resize
        if isinstance(self.decode_head.loss_decode, nn.ModuleList):
            raise ValueError("MultiScaleInputEncoderDecoder expects a single decode_head.loss_decode, not a list")

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.decode_head.forward(self.extract_feat(inputs))

    def msc_inputs(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """The input resized by each of ``msc_scales`` as deeplab-pytorch's MSC (libs/models/msc.py) does:
        ``F.interpolate(x, scale_factor=p, mode="bilinear", align_corners=False)``. The output is floor(size * p)
        pixels and, unlike a computed ``size=``, the sampling grid follows 1/p itself rather than in/out, so on a size
        not divisible by 1/p (e.g. 33 x 0.75) the resized pixels differ."""
        return [F.interpolate(inputs, scale_factor=s, mode="bilinear", align_corners=False) for s in self.msc_scales]

    def multi_scale_logits(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """[1x logits, logits of each scaled input (own size), pixel-wise max at the 1x size]; [1x] without scales."""
        base = self._logits(inputs)
        if not self.msc_scales:
            return [base]
        scaled = [self._logits(x) for x in self.msc_inputs(inputs)]
        upsampled = [F.interpolate(x, size=base.shape[2:], mode="bilinear", align_corners=False) for x in scaled]
        fused = torch.stack([base] + upsampled).max(0).values
        return [base] + scaled + [fused]

    def _output_names(self) -> list[str]:
        if not self.msc_scales:
            return ["1x"]
        return ["1x"] + [f"{s:g}x" for s in self.msc_scales] + ["max"]

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        labels = torch.stack([ds.gt_sem_seg.data for ds in data_samples])[:, 0].long()  # N x H x W
        losses = {}
        outputs = self.multi_scale_logits(inputs)
        targets = {}
        for name, logits in zip(self._output_names(), outputs):
            if self.label_resize == "nearest_to_logits":
                size = tuple(logits.shape[2:])
                if size not in targets:
                    targets[size] = resize_labels_nearest(labels, size)
                target = targets[size]
            else:
                logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear",
                                       align_corners=self.align_corners)
                target = labels
            losses[f"decode.loss_ce_{name}"] = self.decode_head.loss_decode(
                logits, target, ignore_index=self.decode_head.ignore_index)
            if name == "1x":
                losses["decode.acc_seg"] = accuracy(logits, target, ignore_index=self.decode_head.ignore_index)
        return losses

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        logits = self.multi_scale_logits(inputs)[-1] if self.msc_at_test else self._logits(inputs)
        return self.decode_head.predict_by_feat(logits, batch_img_metas)

    def _forward(self, inputs: torch.Tensor, data_samples=None) -> torch.Tensor:
        return self.multi_scale_logits(inputs)[-1] if self.msc_at_test else self._logits(inputs)


def head_in_channels(depth: int, base_channels: int) -> int:
    """Channels of the last ResNet stage (the head's input): base*8 for BasicBlock depths, base*32 for Bottleneck."""
    if depth in (18, 34):
        return base_channels * 8
    if depth in (50, 101, 152):
        return base_channels * 8 * 4
    raise ValueError(f"ResNet depth must be one of 18, 34, 50, 101, 152, got {depth}")
