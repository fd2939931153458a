"""A stand-in for the three files configs/voc12.yaml needs, so the paper's path can be rehearsed without them:
``python -m wsss_common.rehearsal_data --out DIR`` writes, where voc12.yaml looks for them relative to DIR,

    DIR/data/VOCdevkit/VOC2012/                  a tiny VOC2012 layout: JPEGImages, SegmentationClass (train and val
                                                 only, as most of the real train_aug has no mask), Annotations XML,
                                                 ImageSets/Segmentation/{train_aug,train,val}.txt; VOC's 21 classes
    DIR/pretrained/resnet50-19c8e357.pth         torchvision's ResNet-50 state dict, random values
    DIR/pretrained/deeplabv2_resnet101_imagenet.pth  deeplab-pytorch's caffe ResNet-101 key layout, random values

then ``snakemake voc_val_miou --cores 2 --directory DIR --configfile configs/voc12.yaml configs/voc12_rehearsal.yaml``
runs every stage of the paper's pipeline on them (the numbers mean nothing). Existing files are never overwritten.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .io import save_label_png
from .voc import VOC_CLASSES

VOC_ROOT = "data/VOCdevkit/VOC2012"                        # configs/voc12.yaml data.root
IMAGENET = "pretrained/resnet50-19c8e357.pth"              # configs/voc12.yaml imagenet_weights
DEEPLAB_INIT = "pretrained/deeplabv2_resnet101_imagenet.pth"  # configs/voc12.yaml segment.init.checkpoint
OBJECT_CLASSES = [1, 8, 12, 15]  # aeroplane, cat, dog, person


def write_tiny_voc(root: Path, seed: int = 0) -> dict:
    """12 train_aug ids (the first 6 are `train`, with SegmentationClass masks; the other 6 have no mask at all, only
    their XML, as most of the real train_aug) and 6 val ids with masks; JPEGs of 48-72 px with 1-2 textured objects
    of four VOC classes on a noisy background; palette masks with a 255 band along object boundaries."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    colours = {c: rng.integers(40, 255, 3) for c in OBJECT_CLASSES}
    train_aug = [f"2007_{i:06d}" for i in range(12)]
    val = [f"2008_{i:06d}" for i in range(6)]
    for n, image_id in enumerate(train_aug + val):
        h, w = (int(v) for v in rng.integers(48, 73, 2))
        image = rng.integers(0, 90, (h, w, 3)).astype(np.float32)
        mask = np.zeros((h, w), np.uint8)
        names = []
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.choice(OBJECT_CLASSES))
            y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            y1, x1 = y0 + int(rng.integers(12, h // 2 + 1)), x0 + int(rng.integers(12, w // 2 + 1))
            yy, xx = np.mgrid[0:h, 0:w]
            inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
            stripes = ((yy + xx) // 3 % 2)[..., None] * 40.0
            image[inside] = (colours[c] + stripes)[inside]
            band = inside & ~((yy > y0) & (yy < y1 - 1) & (xx > x0) & (xx < x1 - 1))
            mask[inside] = c
            mask[band] = 255
            names.append(VOC_CLASSES[c])
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg",
                                                                       quality=90)
        objects = "".join(f"<object><name>{name}</name><difficult>0</difficult></object>" for name in names)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
        if n < 6 or image_id in val:
            save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train_aug.txt").write_text("\n".join(train_aug) + "\n")
    (sets / "train.txt").write_text("\n".join(train_aug[:6]) + "\n")
    (sets / "val.txt").write_text("\n".join(val) + "\n")
    return {"train_aug": train_aug, "train": train_aug[:6], "val": val}


def deeplab_pytorch_r101_state(num_classes: int = 21, seed: int = 0) -> dict:
    """A state dict laid out as kazuto1011/deeplab-pytorch's DeepLabV2 ResNet-101 init (the converted caffemodel):
    layer1.conv1.{conv,bn}, layer{2..5}.block{j}.{reduce,conv3x3,increase[,shortcut]}.{conv,bn} for [3, 4, 23, 3]
    bottlenecks, aspp.c{0..3}; random He-scaled convs, BN with random affine and statistics (the last BN of each
    residual branch scaled down, so the frozen-BN network's activations stay bounded, as a trained one's do)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv_bn(prefix, cin, cout, k, gamma=1.0):
        state[f"{prefix}.conv.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        state[f"{prefix}.bn.weight"] = gamma * (1 + 0.1 * torch.randn(cout, generator=g))
        state[f"{prefix}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{prefix}.bn.running_var"] = 1 + torch.rand(cout, generator=g)

    conv_bn("layer1.conv1", 3, 64, 7)
    cin = 64
    for stage, (blocks, cout) in enumerate(zip((3, 4, 23, 3), (256, 512, 1024, 2048)), start=2):
        for j in range(1, blocks + 1):
            p = f"layer{stage}.block{j}"
            conv_bn(f"{p}.reduce", cin if j == 1 else cout, cout // 4, 1)
            conv_bn(f"{p}.conv3x3", cout // 4, cout // 4, 3)
            conv_bn(f"{p}.increase", cout // 4, cout, 1, gamma=0.1)  # small residual branches: 33 blocks stay bounded
            if j == 1:
                conv_bn(f"{p}.shortcut", cin, cout, 1)
        cin = cout
    for i in range(4):
        state[f"aspp.c{i}.weight"] = 0.01 * torch.randn(num_classes, 2048, 3, 3, generator=g)
        state[f"aspp.c{i}.bias"] = torch.zeros(num_classes)
    return state


def write_weights(workdir: Path) -> None:
    """The two files voc12.yaml names, in their real formats. Random weights, conditioned as a trained network's are:
    BN statistics calibrated on random images and the residual branches starting at zero (torchvision's
    zero_init_residual). A plain fresh ResNet-50 under IRN's fixed-BN CAM recipe (lr 0.1 / 1.0) diverges to NaN in
    three steps; ImageNet weights do not."""
    import torch
    import torchvision

    (workdir / "pretrained").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(123)
    net = torchvision.models.resnet50(zero_init_residual=True)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 3, 64, 64))
    torch.save(net.state_dict(), workdir / IMAGENET)  # torchvision's own format
    torch.save(deeplab_pytorch_r101_state(), workdir / DEEPLAB_INIT)




def write_rehearsal_data(out: str | Path) -> Path:
    """The VOC layout and both weight files under ``out`` (see the module docstring); refuses to overwrite."""
    out = Path(out)
    existing = [str(out / p) for p in (VOC_ROOT, IMAGENET, DEEPLAB_INIT) if (out / p).exists()]
    if existing:
        raise FileExistsError(f"not overwriting {', '.join(existing)}: give another --out")
    write_tiny_voc(out / VOC_ROOT)
    write_weights(out)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder to run the rehearsal in (snakemake --directory)")
    a = p.parse_args(argv)
    write_rehearsal_data(a.out)
    print(f"wrote {a.out}/{VOC_ROOT}, {a.out}/{IMAGENET}, {a.out}/{DEEPLAB_INIT}", file=sys.stderr)


if __name__ == "__main__":
    main()
