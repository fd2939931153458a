"""Train the BAS seed network (or, with method cam, IRN's CAM baseline): python -m bas_seed.train.

    python -m bas_seed.train --voc-root VOC2012 --labels labels/train_aug.json --settings '{...bas section...}' \
        --out results/x/bas_seed/model.pt --loss-log results/x/bas_seed/loss_log.jsonl [--method cam] [--resume]

A plain linear loop. After every epoch the state goes atomically to ``<out>.partial`` (with the loss history so far)
and the epoch's mean loss terms to ``--loss-log`` (JSON lines); ``--resume`` continues from ``<out>.partial`` to the
same final weights and the same whole loss log as an uninterrupted run, even when the old loss log was deleted. ``--out`` is written only when the last epoch is done. Under ``torchrun`` with more than one
process it trains with DDP (rank 0 writes the files).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from wsss_common.config import load_section
from wsss_common.devices import select_device, set_threads
from wsss_common.io import write_text_atomic
from wsss_common.training import (check_finite, load_checkpoint, make_optimizer, save_checkpoint, seed_everything,
                                  set_poly_lr)

from . import losses
from .data import ClassificationDataset, bas_augment, cam_augment, epoch_batches, load_training_labels
from .model import build_model, model_config_of

log = logging.getLogger("bas_seed.train")

def parse_settings(settings_json: str | dict, method: str | None = None) -> dict:
    """The ``bas`` section through the project's one loader (workflow/schemas/bas.schema.yaml: validated, defaults
    filled in, errors name the key); ``method`` overrides ``bas.method``."""
    settings = load_section("bas", settings_json)
    if method is not None:
        settings["method"] = method
    return settings


def recipe(settings: dict) -> dict:
    """The optimisation/augmentation values of the method being trained (CAM: the ``cam`` sub-mapping)."""
    return settings["cam"] if settings["method"] == "cam" else settings


def param_groups(model, lr: float, new_layer_lr_mult: float, train_biases: bool,
                 generator_lr_mult: float | None = None) -> list[dict]:
    """Backbone at lr, classifier (and generator) at lr * new_layer_lr_mult; with ``generator_lr_mult`` the BAS
    generator gets its own group at lr * generator_lr_mult. Without ``train_biases`` (BAS reference: only parameters
    named "...weight" reach the optimiser) biases are frozen, i.e. BN betas keep their initial values."""
    plan = [(model.backbone_modules(), lr)]
    if generator_lr_mult is not None and hasattr(model, "generator"):
        plan += [([model.classifier], lr * new_layer_lr_mult), (model.generator_modules(), lr * generator_lr_mult)]
    else:
        plan += [(model.new_modules(), lr * new_layer_lr_mult)]
    groups = []
    for modules, group_lr in plan:
        params = []
        for module in modules:
            for name, p in module.named_parameters():
                if not train_biases and not name.endswith("weight"):
                    p.requires_grad_(False)
                if p.requires_grad:
                    params.append(p)
        groups.append({"params": params, "lr": group_lr})
    return groups


def make_augment(settings: dict):
    r = recipe(settings)
    if settings["method"] == "cam":
        return lambda img, rng: cam_augment(img, rng, resize_long=tuple(r["resize_long"]), crop=r["crop"])
    return lambda img, rng: bas_augment(img, rng, resize=r["resize"], crop=r["crop"], resize_mode=r["resize_mode"])


def pick_generator(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    """The seeded generator that draws this step's M_f classes (a function of seed, epoch, step and rank only)."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, epoch, step, rank]).integers(2**62)))


def train_step(model, method: str, images, labels, settings: dict, picked, warmup: bool = False):
    """Forward + loss of one batch: (total loss, {term: value}).

    ``warmup`` (BAS only, the first ``warmup_epochs``): the loss is L_mcls alone, so backbone and F2 learn to
    classify before the generator is trained against them. Only the classification path runs (no generator, no
    background branches: a warm-up epoch of the demo takes ~2/3 the time of a BAS epoch), so only ``mcls`` is returned.
    """
    if method == "cam":
        loss = losses.cam_loss(model(images), labels)
        return loss, {"cam": loss}
    if warmup:
        mcls = losses.mcls_loss(model(images, None)["scores"].float(), labels)
        return mcls, {"mcls": mcls}
    total, terms = losses.bas_training_loss(
        model(images, picked), labels, picked, alpha=settings["alpha"], beta=settings["beta"],
        lam=settings["lambda"], eps=settings["eps"], agnostic_bas_weight=settings["agnostic_bas_weight"],
        agnostic_area_weight=settings["agnostic_area_weight"])
    return total, terms


def init_distributed():
    """(rank, world_size); under torchrun with WORLD_SIZE > 1 the process group is started (NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def train(voc_root: str, labels_path: str, settings: dict, out: str, loss_log: str, device: torch.device,
          seed: int = 0, resume: bool = False, rank: int = 0, world_size: int = 1,
          imagenet_weights: str | None = None) -> dict:
    """Train to ``out`` (from the torchvision ImageNet file ``imagenet_weights``, or random init); returns the final
    checkpoint dict."""
    method = settings["method"]
    r = recipe(settings)
    out, loss_log = Path(out), Path(loss_log)
    partial = out.with_name(out.name + ".partial")
    distributed = world_size > 1
    main_process = rank == 0

    ids, labels, num_fg = load_training_labels(labels_path, require_label=method == "bas")
    if settings["max_images"]:
        ids = ids[:settings["max_images"]]  # CPU demo: the first N ids of the label cache
    if r["batch_size"] % world_size:
        raise ValueError(f"batch_size {r['batch_size']} is not divisible by the {world_size} GPUs")
    batch_per_rank = r["batch_size"] // world_size
    if len(ids) < r["batch_size"]:
        raise ValueError(f"{labels_path}: {len(ids)} training images, fewer than one batch of {r['batch_size']}")
    dataset = ClassificationDataset(voc_root, ids, labels, num_fg, make_augment(settings), seed,
                                    cache_images=settings["cache_images"])
    if settings["cache_images"]:
        log.info("%d decoded images kept in memory (%.0f MB)", len(ids), dataset.images.nbytes / 2**20)
    steps_per_epoch = len(epoch_batches(len(ids), batch_per_rank, seed, 0, rank, world_size))
    # Reference quirk (BAS under 4-GPU DDP): max_step counted with the per-GPU batch over the whole dataset, so the
    # poly lr only falls to ~0.77x; without the quirk the schedule ends at 0 after the steps each process runs.
    max_step = (len(ids) // batch_per_rank if settings["ddp_max_step_quirk"] else steps_per_epoch) * r["epochs"]

    seed_everything(seed)
    training_options = ({"fixed_bn": r["fixed_bn"], "freeze_stem": r["freeze_stem"]} if method == "cam"
                        else {"background_bn": settings["background_bn"]})
    model_config = {"method": method, "depth": settings["depth"], "num_fg": num_fg,
                    "class_agnostic": bool(settings["class_agnostic"]) and method == "bas",
                    "agnostic_backbone_gradient": bool(settings["agnostic_backbone_gradient"]) and method == "bas"}
    model = build_model(model_config, weights=imagenet_weights, **training_options)
    backbone_init = str(imagenet_weights) if imagenet_weights else "random"
    log.info("%s backbone from %s", method, backbone_init)
    model_config = model_config_of(model, settings["depth"])
    groups = param_groups(model, r["lr"], r["new_layer_lr_mult"],
                          train_biases=True if method == "cam" else settings["train_biases"],
                          generator_lr_mult=settings["generator_lr_mult"] if method == "bas" else None)
    if distributed and method == "bas" and settings["sync_bn"]:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # reference: SyncBN in train mode
        else:  # torch's SyncBatchNorm runs on GPUs only; a CPU DDP run (a rehearsal, a test cluster) uses local BN
            log.warning("bas.sync_bn: SyncBatchNorm needs CUDA; this CPU DDP run normalises per process")
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda and settings["channels_last"] else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = make_optimizer(groups, name=r["optimizer"], lr=r["lr"],
                               weight_decay=r["weight_decay"], momentum=r["momentum"],
                               reference_momentum_quirk=r["reference_momentum_quirk"])
    use_amp = cuda and settings["amp"]
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, step = 0, 0
    if resume and partial.is_file():
        ckpt = load_checkpoint(partial, map_location=device)
    else:
        ckpt = None
        if resume:
            log.info("--resume: no %s, starting from scratch", partial)
    if ckpt is not None and (ckpt["settings"] != settings or ckpt["seed"] != seed):
        log.warning("%s was written with other settings or seed: starting from scratch", partial)
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        log.info("resuming from %s after epoch %d (step %d)", partial, start_epoch, step)
    # The loss history travels inside the checkpoint: Snakemake deletes an incomplete job's outputs (the loss log
    # among them) before it reruns the job, so a resumed run could not read the epochs before the kill from the log.
    history = list(ckpt.get("history", [])) if ckpt is not None else []

    net = model
    if distributed:
        # warm-up epochs leave the generator without gradients, which DDP must be told about
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None,
            find_unused_parameters=method == "bas" and settings["warmup_epochs"] > 0)
    log.info("%s: %d images, %d epochs x %d steps of %d (x%d ranks), max_step %d, device %s", method, len(ids),
             r["epochs"], steps_per_epoch, batch_per_rank, world_size, max_step, device)

    for epoch in range(start_epoch, r["epochs"]):
        net.train()
        dataset.set_epoch(epoch)
        batches = epoch_batches(len(ids), batch_per_rank, seed, epoch, rank, world_size)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=settings["num_workers"],
                                             pin_memory=cuda)
        sums: dict[str, float] = {}
        started = time.time()
        for batch_index, (images, targets) in enumerate(tqdm(loader, desc=f"{method} epoch {epoch + 1}/{r['epochs']}",
                                                            mininterval=10, disable=not main_process)):
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            targets = targets.to(device, non_blocking=True)
            picked = None
            if method == "bas":
                picked = losses.pick_classes(targets.cpu(), pick_generator(seed, epoch, batch_index, rank))
                picked = picked.to(device)
            set_poly_lr(optimizer, step, max_step, r["poly_power"])
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                total, terms = train_step(net, method, images, targets, settings, picked,
                                          warmup=method == "bas" and epoch < settings["warmup_epochs"])
            terms = {k: v.item() for k, v in terms.items()}
            check_finite(total.item(), step=step, terms=terms)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            for k, v in {"total": total.item(), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v
        means = {k: v / len(batches) for k, v in sums.items()}
        if distributed:
            packed = torch.tensor([means[k] for k in sorted(means)], device=device)
            dist.all_reduce(packed)
            means = {k: float(v) / world_size for k, v in zip(sorted(means), packed)}
        entry = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                 "seconds": round(time.time() - started, 3), **means}
        log.info("epoch %d: %s", epoch + 1, json.dumps(entry))
        if main_process:
            history.append(json.dumps(entry))
            write_text_atomic(loss_log, "\n".join(history) + "\n")
            save_checkpoint(partial, model=model.state_dict(), model_config=model_config, epoch=epoch + 1,
                            step=step, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                            settings=settings, seed=seed, history=history)
        if distributed:
            dist.barrier()

    final = {"model": model.state_dict(), "model_config": model_config, "epoch": r["epochs"], "step": step,
             "optimizer": optimizer.state_dict(), "settings": settings, "seed": seed, "backbone_init": backbone_init}
    if main_process:
        save_checkpoint(out, **final)
        partial.unlink(missing_ok=True)
        log.info("wrote %s", out)
    return final


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bas_seed.train", description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True, help="VOC2012 folder (JPEGImages/...)")
    p.add_argument("--labels", required=True, help="image-label cache JSON of the training split (train_aug)")
    p.add_argument("--settings", required=True, help="the config section bas, as one JSON object")
    p.add_argument("--out", required=True, help="final checkpoint path (wsss-checkpoint/1)")
    p.add_argument("--loss-log", required=True, help="per-epoch loss terms, JSON lines")
    p.add_argument("--method", choices=["bas", "cam"], default=None, help="override settings method")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>.partial when it exists")
    p.add_argument("--imagenet-weights", default=None,
                   help="local torchvision ImageNet ResNet state dict (config key imagenet_weights); omit = random init")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    settings = parse_settings(args.settings, args.method)
    set_threads(args.threads)
    rank, world_size = init_distributed()
    device = select_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        train(args.voc_root, args.labels, settings, args.out, args.loss_log, device, seed=args.seed,
              resume=args.resume, rank=rank, world_size=world_size, imagenet_weights=args.imagenet_weights)
    finally:
        if world_size > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
