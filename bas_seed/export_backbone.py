"""Write the ResNet of a trained BAS or CAM checkpoint as a torchvision-format state dict:
``python -m bas_seed.export_backbone --model CKPT --out FILE.pth``.

The file has the format of the config key ``imagenet_weights`` (``conv1``, ``bn1``, ``layer1``..``layer4``; no
``fc``), so a network trained on one set can initialise the models of another, as the ImageNet file does on real
photos. The workflow's ``pretraining`` writes the demo's stand-in for ImageNet with it. Written atomically.
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from bas_seed.model import backbone_state_dict, load_model
from wsss_common.io import atomic_path

log = logging.getLogger("bas_seed.export_backbone")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bas_seed.export_backbone", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint written by bas_seed.train (BAS or CAM)")
    p.add_argument("--out", required=True, help="the torchvision-format ResNet state dict to write (.pth)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    state = backbone_state_dict(load_model(args.model))
    with atomic_path(args.out) as tmp:
        torch.save(state, tmp)
    log.info("wrote %s (%d tensors of %s)", args.out, len(state), args.model)


if __name__ == "__main__":
    main()
