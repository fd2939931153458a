"""The BAS seed network and the IRN CAM baseline, both on a torchvision ResNet at output stride 16.

BASNet (bas_irn_facts.md §1.2):
    x3 = extract(x)                      stem .. layer3, "F1" in the paper (stride 16)
    M  = sigmoid(generator(x3))          3x3 conv, no bias: one map per foreground class
    A  = sigmoid(agnostic(x3.detach()))  optional class-agnostic foreground map (§5.5), 3x3 conv, no bias, on
                                         *detached* layer3 features: an add-on that cannot change the released
                                         network (class_agnostic false = the released network exactly).
                                         agnostic_backbone_gradient (a deviation, the demo's): A is instead one more
                                         channel of the generator conv, on x3 itself, so its losses train layer1-3
    F  = classifier(layer4(x3))          "F2": layer4 + 1x1 conv, no bias; class scores = GAP(F)
    background branch                    F2 with frozen weights on x3.detach() * (1 - M_f), see ``background_scores``

CAMNet: IRN's CAM classifier (facts §2.2): scores = classifier(GAP(layer4(...))), maps = relu(classifier(layer4)).

A training checkpoint (``wsss_common.training.save_checkpoint``) stores ``model`` (state_dict) and ``model_config``
``{"method": "bas"|"cam", "depth", "num_fg", "class_agnostic"[, "agnostic_backbone_gradient"]}``; ``load_model``
rebuilds the net from it alone.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from wsss_common.resnet import build_resnet, layer_channels
from wsss_common.training import load_checkpoint

METHODS = ("bas", "cam")


def _init_new_conv(conv: nn.Conv2d) -> None:
    """The reference initialises its new convs with xavier-uniform (``initialize_weights(..., 'xavier')``)."""
    nn.init.xavier_uniform_(conv.weight)


class BASNet(nn.Module):
    def __init__(self, num_fg: int, depth: int = 50, weights: str | None = None, class_agnostic: bool = True,
                 background_bn: str = "batch", agnostic_backbone_gradient: bool = False):
        super().__init__()
        if background_bn not in ("batch", "running"):
            raise ValueError(f"background_bn must be 'batch' or 'running', got {background_bn!r}")
        self.num_fg = int(num_fg)
        self.class_agnostic = bool(class_agnostic)
        # "batch": the background branch normalises with the batch statistics of the erased features, as the
        # reference's train-mode deepcopy of layer4 does; "running": it uses layer4's running statistics.
        self.background_bn = background_bn
        # False: the agnostic head trains on x3.detach() (the released network is unchanged beside it); True: its
        # losses also train layer1-3, which then shapes the class-specific maps too (a deviation, bas.schema.yaml)
        self.agnostic_backbone_gradient = bool(agnostic_backbone_gradient)
        backbone = build_resnet(depth, strides=(1, 2, 2, 1), weights=weights)
        c3, c4 = layer_channels(backbone)[2:]
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (backbone.layer1, backbone.layer2,
                                                              backbone.layer3, backbone.layer4)
        joint = self.class_agnostic and self.agnostic_backbone_gradient
        self.generator = nn.Conv2d(c3, self.num_fg + int(joint), 3, padding=1, bias=False)
        self.classifier = nn.Conv2d(c4, self.num_fg, 1, bias=False)
        _init_new_conv(self.generator)
        _init_new_conv(self.classifier)
        self.separate_agnostic = self.class_agnostic and not joint
        if self.separate_agnostic:
            # Its own conv, initialised last on a forked RNG: the rest of the net (and everything drawn from the global
            # RNG afterwards) is the same with and without it, and its training input is x3.detach(), so its losses
            # never reach layer1-3. The class-specific maps of a class_agnostic model are then those of the released
            # network trained alone (Table 6/9 "Ours"), and the agnostic map only adds Table 13's fusion.
            self.agnostic = nn.Conv2d(c3, 1, 3, padding=1, bias=False)
            with torch.random.fork_rng(devices=[]):
                _init_new_conv(self.agnostic)

    def backbone_modules(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def generator_modules(self) -> list[nn.Module]:
        """The map generators: the class-specific generator and, when present, the class-agnostic one."""
        return [self.generator] + ([self.agnostic] if self.separate_agnostic else [])

    def new_modules(self) -> list[nn.Module]:
        """The layers that get the 10x learning rate (the reference's "classifier" name match; the agnostic
        generator, not in the reference, is treated as the generator)."""
        return [self.classifier] + self.generator_modules()

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def generate(self, x3: torch.Tensor) -> torch.Tensor:
        """Inference maps: (B, num_fg [+ 1], h, w), the class-agnostic map (if any) as the last channel."""
        maps = torch.sigmoid(self.generator(x3))
        if self.separate_agnostic:
            maps = torch.cat([maps, torch.sigmoid(self.agnostic(x3))], dim=1)
        return maps

    def classify(self, x3: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layer4(x3))

    def localization_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.generate(self.extract(x))

    def background_scores(self, x3: torch.Tensor, fg_map: torch.Tensor) -> torch.Tensor:
        """GAP(F2(x3.detach() * (1 - fg_map))) with F2's weights frozen: (B, num_fg) logits.

        The reference deep-copies layer4 and the classifier in every forward pass; here the same parameters are used
        detached, and BN buffers are cloned, so the branch gets no weight gradient and leaves the real running
        statistics untouched (the copy's updated statistics are thrown away in the reference too). The gradient of
        anything computed from these scores reaches the network only through ``fg_map``.
        """
        erased = x3.detach() * (1.0 - fg_map)
        frozen = {name: p.detach() for name, p in self.layer4.named_parameters()}
        frozen.update({name: b.clone() for name, b in self.layer4.named_buffers()})
        with self._layer4_mode(self.training and self.background_bn == "batch"):
            feat = functional_call(self.layer4, frozen, (erased,))
        cam = F.conv2d(feat, self.classifier.weight.detach())
        return cam.mean(dim=(2, 3))

    @contextlib.contextmanager
    def _layer4_mode(self, train: bool):
        previous = [m.training for m in self.layer4.modules()]
        self.layer4.train(train)
        try:
            yield
        finally:
            for m, mode in zip(self.layer4.modules(), previous):
                m.training = mode

    def forward(self, x: torch.Tensor, picked: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Training forward (``picked``: (B,) class index 0..num_fg-1 of the map M_f of each image).

        ``picked`` None (warm-up): the classification path only, ``scores`` and ``cam``. Otherwise returns
        ``scores`` GAP(F) (B, num_fg), ``cam`` F, ``maps`` M, ``fg_map`` M_f (B, 1, h, w), ``bg_scores``
        (B, num_fg) of the background branch erased with M_f, and with the class-agnostic head also
        ``agnostic_map`` (B, 1, h, w) and ``agnostic_bg_scores`` (B, num_fg) of the branch erased with it.
        """
        x3 = self.extract(x)
        cam = self.classify(x3)
        if picked is None:
            return {"scores": cam.mean(dim=(2, 3)), "cam": cam}
        generated = torch.sigmoid(self.generator(x3))
        maps = generated[:, :self.num_fg]
        index = picked.view(-1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
        fg_map = maps.gather(1, index)
        out = {"scores": cam.mean(dim=(2, 3)), "cam": cam, "maps": maps, "fg_map": fg_map,
               "bg_scores": self.background_scores(x3, fg_map)}
        if self.class_agnostic:
            agnostic_map = (torch.sigmoid(self.agnostic(x3.detach())) if self.separate_agnostic
                            else generated[:, self.num_fg:self.num_fg + 1])
            out["agnostic_map"] = agnostic_map
            out["agnostic_bg_scores"] = self.background_scores(x3, agnostic_map)
        return out


class CAMNet(nn.Module):
    """IRN's CAM network (``net/resnet50_cam.py``): same OS16 backbone, 1x1 classifier after GAP.

    IRN's recipe switches (``fixed_bn``: BN always uses running statistics, affine still trained; ``freeze_stem``:
    stem..layer2 are not trained, IRN detaches the layer2 output and turns conv1/bn1 off) matter only in training.
    """

    class_agnostic = False

    def __init__(self, num_fg: int, depth: int = 50, weights: str | None = None, fixed_bn: bool = True,
                 freeze_stem: bool = True):
        super().__init__()
        self.num_fg = int(num_fg)
        self.fixed_bn = bool(fixed_bn)
        self.freeze_stem = bool(freeze_stem)
        backbone = build_resnet(depth, strides=(1, 2, 2, 1), weights=weights)
        c4 = layer_channels(backbone)[3]
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (backbone.layer1, backbone.layer2,
                                                              backbone.layer3, backbone.layer4)
        self.classifier = nn.Conv2d(c4, self.num_fg, 1, bias=False)
        _init_new_conv(self.classifier)
        if self.freeze_stem:  # IRN: conv1/bn1 requires_grad off, layer1-2 get no gradient through the detach
            for module in (self.stem, self.layer1, self.layer2):
                for p in module.parameters():
                    p.requires_grad_(False)

    def backbone_modules(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def new_modules(self) -> list[nn.Module]:
        return [self.classifier]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.fixed_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.layer2(self.layer1(self.stem(x)))
        if self.freeze_stem:
            x2 = x2.detach()
        return self.layer3(x2)

    def classify(self, x3: torch.Tensor) -> torch.Tensor:
        """F2 on layer3 features: classifier(layer4(x3)) (B, num_fg, h, w), as BASNet.classify."""
        return self.classifier(self.layer4(x3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.extract(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training forward: (B, num_fg) logits = classifier(GAP(layer4 features))."""
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def localization_maps(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.classify(self.extract(x)))


def build_model(model_config: dict, weights: str | None = None, **training_options) -> nn.Module:
    """A BASNet or CAMNet from ``{"method", "depth", "num_fg", "class_agnostic"}`` (``class_agnostic`` only for bas).

    ``weights`` (local ImageNet file) and ``training_options`` (BASNet: ``background_bn``; CAMNet: ``fixed_bn``,
    ``freeze_stem``) only matter for training and are not part of the stored config.
    """
    method = model_config.get("method")
    if method not in METHODS:
        raise ValueError(f"model_config.method must be one of {METHODS}, got {method!r}")
    for key in ("depth", "num_fg"):
        if key not in model_config:
            raise ValueError(f"model_config is missing {key!r}: {model_config}")
    if method == "bas":
        return BASNet(model_config["num_fg"], model_config["depth"], weights,
                      class_agnostic=bool(model_config.get("class_agnostic", True)),
                      agnostic_backbone_gradient=bool(model_config.get("agnostic_backbone_gradient", False)),
                      **training_options)
    return CAMNet(model_config["num_fg"], model_config["depth"], weights, **training_options)


def model_config_of(model: nn.Module, depth: int) -> dict:
    return {"method": "cam" if isinstance(model, CAMNet) else "bas", "depth": int(depth),
            "num_fg": int(model.num_fg), "class_agnostic": bool(model.class_agnostic),
            **({"agnostic_backbone_gradient": True} if getattr(model, "agnostic_backbone_gradient", False) else {})}


def load_model(checkpoint_path, map_location="cpu") -> nn.Module:
    """The trained net of a checkpoint written by ``bas_seed.train``, in eval mode."""
    ckpt = load_checkpoint(checkpoint_path, map_location=map_location)
    if "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{checkpoint_path} has no model/model_config; was it written by bas_seed.train?")
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ResNet of a trained BASNet or CAMNet as a torchvision-format state dict (``conv1``, ``bn1``,
    ``layer1``..``layer4``; no ``fc``), the format of the config key ``imagenet_weights``: a network trained on one
    set can initialise the models of another, as the ImageNet file does on real photos."""
    names = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    state = {}
    for key, value in model.state_dict().items():
        for old, new in names.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        if key.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")):
            state[key] = value.detach().clone()
    return state
