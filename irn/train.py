"""Train the inter-pixel relation network on the IR labels (IRN ``train_irn``):
``python -m irn.train --voc-root R --ir-labels INDEX --out MODEL --settings JSON [--imagenet-weights FILE]
[--bas-checkpoint BAS_MODEL] [--device auto] [--resume]``.

The backbone starts from ``--imagenet-weights`` (the config's top-level ``imagenet_weights``, as IRN does), from the
BAS network's ResNet (``irn.init_from_bas``, with ``--bas-checkpoint``; not the reference), or from random init; a
frozen backbone (``irn.freeze_backbone``, the reference) with neither is refused: a frozen random ResNet is a random
feature extractor.

Poly SGD (edge branch lr, displacement branch lr x ``displacement_lr_mult``), IRN's affinity + displacement losses
on the pairs of a radius-``train_radius`` path index at stride 4. The training state is checkpointed atomically
after every epoch to ``--state`` (default: next to MODEL); ``--resume`` continues from it when its settings match.
The final MODEL holds the network weights and the settings that built it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from irn.data import IRLabelDataset
from irn.losses import affinity_labels, irn_loss
from irn.model import IRNet, load_backbone_from_bas
from irn.path_index import build_path_index, path_indices
from wsss_common.config import ConfigError, load_section
from wsss_common.devices import select_device, set_threads
from wsss_common.io import DataError
from wsss_common.shards import load_index
from wsss_common.training import (check_finite, epoch_rng, load_checkpoint, make_sgd, save_checkpoint,
                                  seed_everything, set_poly_lr)

log = logging.getLogger("irn.train")

# Only these keys (and the backbone's init files, see ``init_signature``) decide the training result; a saved state
# with other values is not resumed.
TRAINING_KEYS = ("backbone_depth", "init_from_bas", "freeze_backbone", "crop_size", "scale_range",
                 "batch_size", "epochs", "lr", "displacement_lr_mult", "weight_decay", "momentum",
                 "reference_momentum_quirk", "poly_power", "train_radius", "seed", "max_train_images")


def check_backbone_init(settings: dict, imagenet_weights: str | Path | None) -> None:
    """Refuse a frozen backbone that would keep its random init: the reference freezes an ImageNet ResNet; frozen
    random weights are a random feature extractor, and only the heads would train on it."""
    if settings["freeze_backbone"] and not imagenet_weights and not settings["init_from_bas"]:
        raise ConfigError(
            "config key irn.freeze_backbone is true but the backbone has no weights: neither imagenet_weights "
            "(irn.train --imagenet-weights) nor irn.init_from_bas is set, so IRN would train its heads on a frozen "
            "random ResNet. Give imagenet_weights, set irn.init_from_bas: true, or set irn.freeze_backbone: false")


def backbone_init(settings: dict, imagenet_weights: str | Path | None, bas_checkpoint: str | Path | None) -> str:
    """Where the backbone's weights come from, in words (logged and recorded in the model checkpoint)."""
    if settings["init_from_bas"]:
        return f"bas:{bas_checkpoint}"
    return f"imagenet:{imagenet_weights}" if imagenet_weights else "random"


def build_model(settings: dict, bas_checkpoint: str | Path | None = None,
                imagenet_weights: str | Path | None = None) -> IRNet:
    """The network to train. Backbone: ``imagenet_weights`` (a torchvision-format state dict, IRN's ImageNet init), or
    with ``init_from_bas`` (not the reference) the BAS network's ResNet, which replaces every backbone weight, so the
    ImageNet file is then not read; a frozen backbone with neither is refused (``check_backbone_init``)."""
    check_backbone_init(settings, imagenet_weights)
    from_bas = settings["init_from_bas"]
    if from_bas and imagenet_weights:
        log.warning("irn.init_from_bas is true: the backbone starts from the BAS network, not from %s",
                    imagenet_weights)
    model = IRNet(depth=settings["backbone_depth"], imagenet_weights=None if from_bas else imagenet_weights,
                  freeze_backbone=settings["freeze_backbone"])
    if from_bas:
        if not bas_checkpoint:
            raise ValueError("config key irn.init_from_bas is true but no BAS checkpoint was given (--bas-checkpoint)")
        load_backbone_from_bas(model, load_checkpoint(bas_checkpoint)["model"], source=str(bas_checkpoint))
    return model


def _file_signature(path: str | Path | None) -> list | None:
    """Path, size and mtime of an init file: a resumed state must come from the same file (a replaced file
    restarts the training, which is the safe side)."""
    if not path:
        return None
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def init_signature(settings: dict, imagenet_weights: str | Path | None,
                   bas_checkpoint: str | Path | None) -> dict:
    if settings["init_from_bas"]:
        return {"imagenet_weights": None, "bas_checkpoint": _file_signature(bas_checkpoint)}
    return {"imagenet_weights": _file_signature(imagenet_weights), "bas_checkpoint": None}


def make_optimizer(model: IRNet, settings: dict) -> torch.optim.Optimizer:
    """Edge branch at lr, displacement branch at lr x displacement_lr_mult (IRN: 0.1 / 1.0); a trainable backbone
    (not the reference) at the edge lr."""
    lr = settings["lr"]
    groups = [{"params": model.edge_parameters(), "lr": lr},
              {"params": model.displacement_parameters(), "lr": lr * settings["displacement_lr_mult"]}]
    if not settings["freeze_backbone"]:
        groups.append({"params": list(model.backbone.parameters()), "lr": lr})
    return make_sgd(groups, lr=lr, weight_decay=settings["weight_decay"], momentum=settings["momentum"],
                    reference_momentum_quirk=settings["reference_momentum_quirk"])


def poly_max_step(n_images: int, batch_size: int, epochs: int) -> int:
    """IRN train_irn: max_step = (len(train_dataset) // irn_batch_size) * irn_num_epoches (990 on train_aug), the
    number of optimiser steps with drop_last; the poly lr of step t (0-based) is lr * (1 - t / max_step) ** power."""
    return (n_images // batch_size) * epochs


def epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled full batches of one epoch (drop_last, as the reference's loader)."""
    order = epoch_rng(seed, epoch).permutation(n_items).tolist()
    return [order[i:i + batch_size] for i in range(0, n_items - batch_size + 1, batch_size)]


def training_ids(label_paths: dict[str, str], max_images: int | None) -> dict[str, str]:
    """The first ``max_images`` ids of the IR-label index (all when null)."""
    ids = list(label_paths)[:max_images] if max_images else list(label_paths)
    return {i: label_paths[i] for i in ids}


def train(voc_root: str, ir_label_index: str, out: str | Path, settings: dict, *, device: torch.device,
          state_path: str | Path, resume: bool = False, num_workers: int = 0,
          bas_checkpoint: str | Path | None = None, imagenet_weights: str | Path | None = None) -> dict:
    """Run the whole training; returns the last epoch's mean loss terms. ``settings``: the config section irn (or
    part of it: validated and completed with the schema defaults here); ``imagenet_weights``: the config's top-level
    ``imagenet_weights`` file or None."""
    settings = load_section("irn", settings)
    check_backbone_init(settings, imagenet_weights)  # before any data is read
    seed_everything(settings["seed"])
    label_paths = training_ids(load_index(ir_label_index), settings.get("max_train_images"))
    crop, batch_size = settings["crop_size"], settings["batch_size"]
    dataset = IRLabelDataset(voc_root, label_paths, crop=crop, scale_range=settings["scale_range"],
                             seed=settings["seed"], cache_images=settings["cache_images"])
    if settings["cache_images"]:
        log.info("%d decoded images and IR labels kept in memory (%.0f MB)", len(dataset),
                 (dataset.images.nbytes + dataset.labels.nbytes) / 2**20)
    steps_per_epoch = len(dataset) // batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{ir_label_index}: {len(dataset)} training images, fewer than irn.batch_size={batch_size}")
    max_step = poly_max_step(len(dataset), batch_size, settings["epochs"])

    init = backbone_init(settings, imagenet_weights, bas_checkpoint)
    model = build_model(settings, bas_checkpoint, imagenet_weights).to(device)
    optimizer = make_optimizer(model, settings)
    path_index = build_path_index(settings["train_radius"])
    indices = path_indices(path_index, crop // 4, crop // 4, device=device)
    start_epoch, step, history = 0, 0, []
    signature = {**{k: settings[k] for k in TRAINING_KEYS},
                 **init_signature(settings, imagenet_weights, bas_checkpoint)}
    state_path = Path(state_path)
    if resume and state_path.is_file():
        state = load_checkpoint(state_path)
        if json.loads(state["signature"]) == signature:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, step = int(state["epoch"]), int(state["step"])
            history = json.loads(state.get("history", "[]"))
            log.info("resumed from %s at epoch %d, step %d", state_path, start_epoch, step)
            for done, terms in enumerate(history, start=1):  # the log keeps the whole history through a resume
                log_epoch(done, terms)
        else:
            log.warning("%s was written with other settings; starting from scratch", state_path)

    use_amp = bool(settings["amp"]) and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    log.info("%d images, %d steps/epoch x %d epochs, crop %d, %d directions x %d sources, device %s, amp %s, "
             "backbone %s", len(dataset), steps_per_epoch, settings["epochs"], crop, len(path_index.directions),
             indices.src.numel(), device, use_amp, init)
    means: dict[str, float] = {}
    for epoch in range(start_epoch, settings["epochs"]):
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=epoch_batches(len(dataset), batch_size, settings["seed"], epoch),
            num_workers=num_workers, pin_memory=device.type == "cuda")
        model.train()
        sums: dict[str, float] = {}
        for images, labels in tqdm(loader, desc=f"irn epoch {epoch + 1}/{settings['epochs']}", mininterval=5):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            set_poly_lr(optimizer, step, max_step, settings["poly_power"])
            with autocast():
                edge_logits, displacement = model(images)
            loss, terms = irn_loss(edge_logits, displacement, affinity_labels(labels, indices), path_index, indices)
            check_finite(float(loss.detach()), step=step, terms=terms)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            for k, v in {"loss": loss.detach(), **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        means = {k: v / steps_per_epoch for k, v in sums.items()}
        history.append(means)
        log_epoch(epoch + 1, means)
        save_checkpoint(state_path, model=model.state_dict(), optimizer=optimizer.state_dict(), epoch=epoch + 1,
                        step=step, signature=json.dumps(signature), history=json.dumps(history))
    save_checkpoint(out, model=model.state_dict(), settings=json.dumps(settings), step=step, backbone_init=init)
    state_path.unlink(missing_ok=True)
    return means


def log_epoch(epoch: int, means: dict) -> None:
    """The per-epoch line of the log (``epoch N: loss 1.2650, pos ...``; the report reads these)."""
    log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in means.items()))


def load_model(path: str | Path, device: torch.device) -> IRNet:
    """Rebuild the trained network from a ``train`` checkpoint (weights and the settings that built it)."""
    ckpt = load_checkpoint(path)
    settings = json.loads(ckpt["settings"])
    model = IRNet(depth=settings["backbone_depth"], imagenet_weights=None,  # every weight comes from the checkpoint
                  freeze_backbone=settings["freeze_backbone"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--ir-labels", required=True, help="index of the IR label PNGs (wsss-index/1)")
    p.add_argument("--out", required=True, help="final model checkpoint")
    p.add_argument("--imagenet-weights", help="torchvision-format ImageNet ResNet state dict for the backbone (the "
                   "config key imagenet_weights); absent = none (random init, refused with irn.freeze_backbone unless "
                   "irn.init_from_bas)")
    p.add_argument("--bas-checkpoint", help="BAS model (bas_seed.train) whose backbone initialises IRN's when "
                   "irn.init_from_bas is true")
    p.add_argument("--state", help="per-epoch training state (default: <out>.state.pt)")
    p.add_argument("--settings", required=True, help="the config section irn, as JSON")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    set_threads(a.threads)
    settings = load_section("irn", a.settings)  # validated against irn.schema.yaml, every default filled
    out = Path(a.out)
    state = Path(a.state) if a.state else out.with_name(out.stem + ".state.pt")
    train(a.voc_root, a.ir_labels, out, settings, device=select_device(a.device), state_path=state,
          resume=a.resume, num_workers=settings["num_workers"], bas_checkpoint=a.bas_checkpoint,
          imagenet_weights=a.imagenet_weights)
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
