"""torchvision ResNet backbones with the strides the WSSS references use, and local-file weight loading.

No weights are downloaded: ``weights`` is an optional path to a torchvision-format state dict
(e.g. resnet50-19c8e357.pth); without one the backbone starts from random init.
"""
from __future__ import annotations

from pathlib import Path


def build_resnet(depth: int, strides=(1, 2, 2, 1), weights: str | None = None):
    """A torchvision ResNet-<depth> without avgpool/fc, layer strides ``strides`` (layer1..layer4), no dilation.

    The default (1, 2, 2, 1) is the output-stride-16 network of BAS and IRN: conv1 s2, maxpool s2, layer2 s2,
    layer3 s2, layer4 s1 with no dilation (the released code sets layer4's stride to 1 and leaves dilation 1).
    """
    import torch
    import torchvision

    factories = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
                 50: torchvision.models.resnet50, 101: torchvision.models.resnet101,
                 152: torchvision.models.resnet152}
    if depth not in factories:
        raise ValueError(f"backbone depth must be one of {sorted(factories)}, got {depth}")
    net = factories[depth](weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path} does not fit ResNet-{depth}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for layer, stride in zip((net.layer1, net.layer2, net.layer3, net.layer4), strides):
        _set_layer_stride(layer, stride)
    net.fc = None
    net.avgpool = None
    return net


def _set_layer_stride(layer, stride: int) -> None:
    block = layer[0]
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1  # Bottleneck: stride on 3x3 (v1.5)
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)
    elif stride != 1:
        raise ValueError("cannot add a stride to a residual block without a downsample branch")


def layer_channels(net) -> list[int]:
    """Output channels of layer1..layer4 (256/512/1024/2048 for ResNet-50, 64..512 for ResNet-18)."""
    out = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        last = layer[-1]
        out.append((last.bn3 if hasattr(last, "bn3") else last.bn2).num_features)
    return out


def torchvision_state_from_bas(bas_state: dict) -> tuple[dict, list[str]]:
    """The ResNet part of a ``bas_seed`` network's state dict (``stem.0`` = conv1, ``stem.1`` = bn1, ``layer1..4``)
    under torchvision's names, and the keys left out (the BAS heads: generator, classifier, agnostic)."""
    renamed, rest = {}, []
    for key, value in bas_state.items():
        if key.startswith("stem.0."):
            renamed["conv1." + key[len("stem.0."):]] = value
        elif key.startswith("stem.1."):
            renamed["bn1." + key[len("stem.1."):]] = value
        elif key.split(".", 1)[0] in ("layer1", "layer2", "layer3", "layer4"):
            renamed[key] = value
        else:
            rest.append(key)
    return renamed, rest
