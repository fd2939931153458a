"""The inter-pixel relation network (IRN ``resnet50_irn.Net``) on a ``wsss_common.resnet`` backbone.

Five backbone taps (x1 = conv1+bn+relu+maxpool at stride 4, x2..x5 = layer1..layer4 at strides 4, 8, 16, 16) feed
- the class-boundary (edge) branch: per tap 1x1 conv (no bias) -> GroupNorm(4, 32) [-> bilinear x2 / x4] -> ReLU,
  cropped to x2's size, concatenated (160 ch) -> 1x1 conv with bias -> 1 boundary logit at stride 4;
- the displacement branch: x1 -> 64 (GN 8), x2 -> 128 (GN 16), x3/x4/x5 -> 256 (GN 16; x4, x5 upsampled x2);
  the stride-8 maps (768 ch) -> 1x1 conv 256 -> GN -> bilinear x2 -> ReLU; concatenated with dp1, dp2 (448 ch) ->
  1x1 conv 256 -> GN -> ReLU -> 1x1 conv 2 (no bias).
With ``freeze_backbone`` (the reference) every tap is detached and the backbone stays in eval mode. The reference's
MeanShift on the displacement output only matters for instance segmentation and is left out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsss_common.resnet import build_resnet, layer_channels, torchvision_state_from_bas


def _branch(in_ch: int, out_ch: int, groups: int, upsample: int = 1) -> nn.Sequential:
    """1x1 conv (no bias) -> GroupNorm [-> bilinear upsample, align_corners=False] -> ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.GroupNorm(groups, out_ch)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class IRNet(nn.Module):
    def __init__(self, depth: int = 50, imagenet_weights: str | None = None, freeze_backbone: bool = True):
        """``imagenet_weights``: a local torchvision-format ResNet state dict for the backbone (the config's top-level
        ``imagenet_weights``; IRN starts from ImageNet), or None for random init."""
        super().__init__()
        self.backbone = build_resnet(depth, strides=(1, 2, 2, 1), weights=imagenet_weights)
        self.freeze_backbone = freeze_backbone
        c2, c3, c4, c5 = layer_channels(self.backbone)
        c1 = self.backbone.conv1.out_channels
        self.edge_branches = nn.ModuleList([
            _branch(c1, 32, 4), _branch(c2, 32, 4), _branch(c3, 32, 4, 2), _branch(c4, 32, 4, 4),
            _branch(c5, 32, 4, 4)])
        self.edge_out = nn.Conv2d(160, 1, 1, bias=True)
        self.dp1 = _branch(c1, 64, 8)
        self.dp2 = _branch(c2, 128, 16)
        self.dp3 = _branch(c3, 256, 16)
        self.dp4 = _branch(c4, 256, 16, 2)
        self.dp5 = _branch(c5, 256, 16, 2)
        self.dp_up = _branch(768, 256, 16, 2)
        self.dp_out = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256),
                                    nn.ReLU(inplace=True), nn.Conv2d(256, 2, 1, bias=False))
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen: BN keeps its running statistics
        return self

    def edge_parameters(self) -> list[nn.Parameter]:
        return [*self.edge_branches.parameters(), *self.edge_out.parameters()]

    def displacement_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.dp1, self.dp2, self.dp3, self.dp4, self.dp5, self.dp_up, self.dp_out)
                for p in m.parameters()]

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.backbone
        x1 = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x2 = b.layer1(x1)
        x3 = b.layer2(x2)
        x4 = b.layer3(x3)
        x5 = b.layer4(x4)
        taps = [x1, x2, x3, x4, x5]
        return [t.detach() for t in taps] if self.freeze_backbone else taps

    def edge_head(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """The class-boundary branch on the five taps: (B, 1, h, w) logits at x2's size."""
        h, w = taps[1].shape[2:]
        edges = [branch(t)[..., :h, :w] for branch, t in zip(self.edge_branches, taps)]
        return self.edge_out(torch.cat(edges, dim=1))

    def boundary_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Boundary logits alone (what the random walk needs): the displacement branch is not run."""
        return self.edge_head(self.taps(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) -> boundary logits (B, 1, h, w) and displacement (B, 2, h, w), h, w = x2's size."""
        x1, x2, x3, x4, x5 = self.taps(x)
        h, w = x2.shape[2:]
        edge_logits = self.edge_head([x1, x2, x3, x4, x5])
        d3 = self.dp3(x3)
        h8, w8 = d3.shape[2:]
        stride8 = torch.cat([d3, self.dp4(x4)[..., :h8, :w8], self.dp5(x5)[..., :h8, :w8]], dim=1)
        up = self.dp_up(stride8)[..., :h, :w]
        displacement = self.dp_out(torch.cat([self.dp1(x1), self.dp2(x2), up], dim=1))
        return edge_logits, displacement


def backbone_state_from_bas(bas_state: dict[str, torch.Tensor], source: str = "BAS checkpoint") -> dict:
    """The ResNet part of a ``bas_seed`` network's state dict (``stem.0`` = conv1, ``stem.1`` = bn1, ``layer1..4``)
    renamed to torchvision names; the BAS heads (generator, classifier) are dropped."""
    renamed, _ = torchvision_state_from_bas(bas_state)
    if "conv1.weight" not in renamed or not any(k.startswith("layer4.") for k in renamed):
        raise ValueError(f"{source} has no stem.0/layer1..4 weights of a BAS ResNet")
    return renamed


def load_backbone_from_bas(model: IRNet, bas_state: dict[str, torch.Tensor], source: str = "BAS checkpoint") -> None:
    """Initialise the IRN backbone with the BAS network's ResNet (same depth required)."""
    state = backbone_state_from_bas(bas_state, source)
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source} does not fit the IRN backbone (irn.backbone_depth): missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")


def padded_size(height: int, width: int, min_size: int, multiple: int = 16) -> tuple[int, int]:
    """Inference canvas: at least ``min_size`` (the reference pads every image to its 512 crop) and a multiple of
    ``multiple`` (so the stride-16 taps align with stride 4 for larger images, which the reference cannot take)."""
    def up(n: int) -> int:
        return -(-max(n, min_size) // multiple) * multiple
    return up(height), up(width)


@torch.no_grad()
def boundary_map(model: IRNet, image: torch.Tensor, *, pad_to: int, flip: bool = True) -> torch.Tensor:
    """Boundary probability (h, w) at stride 4, h = (H-1)//4+1, of one normalised image (3, H, W): the image (and
    its horizontal flip) zero-padded right/bottom, sigmoid of the averaged logits (IRN ``EdgeDisplacement``)."""
    height, width = image.shape[1:]
    canvas_h, canvas_w = padded_size(height, width, pad_to)
    batch = image[None] if not flip else torch.stack([image, image.flip(-1)])
    batch = F.pad(batch, (0, canvas_w - width, 0, canvas_h - height))
    edge_logits = model.boundary_logits(batch)  # the displacement branch is not needed here
    edge_logits = edge_logits[:, 0, :(height - 1) // 4 + 1, :(width - 1) // 4 + 1].float()
    if flip:
        return torch.sigmoid(edge_logits[0] / 2 + edge_logits[1].flip(-1) / 2)
    return torch.sigmoid(edge_logits[0])
