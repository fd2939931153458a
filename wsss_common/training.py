"""Pieces every training loop here shares: poly learning rate, the reference optimiser quirk, reproducible
per-epoch randomness, atomic checkpoints with resume, and a NaN guard."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from .io import atomic_path

CHECKPOINT_FORMAT = "wsss-checkpoint/1"


def poly_lr(base_lr: float, step: int, max_step: int, power: float = 0.9) -> float:
    """lr * (1 - step / max_step) ** power (IRN/BAS PolyOptimizer and deeplab-pytorch)."""
    return base_lr * (1.0 - min(step, max_step) / max_step) ** power


def make_sgd(param_groups, *, lr: float, weight_decay: float, momentum: float, reference_momentum_quirk: bool):
    """SGD as the config asks. With ``reference_momentum_quirk`` the released IRN/BAS PolyOptimizer is reproduced:
    it calls ``SGD.__init__(params, lr, weight_decay)``, so weight_decay lands in SGD's positional *momentum* slot,
    while every param group it is given carries ``weight_decay`` itself (IRN step/train_irn.py, BAS-Extension
    tool/optimizer.py): the real setting is momentum = weight_decay (1e-4) **and** weight decay = weight_decay in
    every group. Without the quirk: the configured momentum and weight decay.
    """
    import torch

    if reference_momentum_quirk:
        groups = [{**g, "weight_decay": g.get("weight_decay", weight_decay)} if isinstance(g, dict) else g
                  for g in param_groups]
        return torch.optim.SGD(groups, lr=lr, momentum=weight_decay, weight_decay=weight_decay)
    return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_optimizer(param_groups, *, name: str, lr: float, weight_decay: float, momentum: float,
                   reference_momentum_quirk: bool):
    """``sgd`` (the references: ``make_sgd``) or ``adamw`` (torch AdamW, default betas; momentum and the quirk do not
    apply). Every group keeps its own lr, so the poly schedule and the new-layer multiplier work for both.

    AdamW runs torch's fused kernel (CPU and CUDA): the same update as the default per-tensor loop up to float
    rounding, in one pass over each tensor. On a ResNet-18 the step takes 8.5 instead of 35 ms on 2 CPU threads
    (a plain ResNet-18 step of 16 images at crop 64, session 19), about a tenth of the demo's BAS step."""
    import torch

    if name == "sgd":
        return make_sgd(param_groups, lr=lr, weight_decay=weight_decay, momentum=momentum,
                        reference_momentum_quirk=reference_momentum_quirk)
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, fused=True)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def set_poly_lr(optimizer, step: int, max_step: int, power: float) -> None:
    """Set every group's lr to its ``initial_lr`` (set here on first use) times the poly factor."""
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
        g["lr"] = poly_lr(g["initial_lr"], step, max_step, power)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_rng(seed: int, epoch: int, index: int = -1) -> np.random.Generator:
    """Randomness that depends only on (seed, epoch, sample index): shuffling and augmentation drawn from it make a
    resumed run identical to an uninterrupted one, whatever the number of data-loader workers."""
    return np.random.default_rng([seed, epoch, index + 1])


def save_checkpoint(path: str | Path, **state) -> None:
    """torch.save of a dict of tensors/numbers/strings (no pickled classes), written atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of format {CHECKPOINT_FORMAT}")
    return ckpt


def check_finite(loss_value: float, *, step: int, terms: dict | None = None) -> None:
    """Stop the run with a message naming the step and the loss terms when the loss is NaN or infinite."""
    if not math.isfinite(loss_value):
        detail = ", ".join(f"{k}={float(v):.4g}" for k, v in (terms or {}).items())
        raise FloatingPointError(f"loss is {loss_value} at step {step} ({detail}); lower the learning rate or "
                                 "check the input data")
