"""Speed and peak memory of every stage, ours beside the reference formulation where there is one, in one command.

    PYTHONPATH=. python bench/speed.py [--device cpu|cuda] [--threads 1] [--presets demo voc] [--stages ...]
        [--quick] [--dense-voc] [--batch irn_train=8 ...] [--warmup 2] [--repeats 5]
        [--write-results [--results bench/RESULTS.md] [--marker speed]] [--json-out FILE] [--log FILE]
    PYTHONPATH=. python bench/speed.py --render-json FILE [--write-results --marker speed-gpu]   (table of a JSON)
    PYTHONPATH=. python bench/speed.py --stage NAME --preset P --json FILE [same options]   (one measurement)

The first form runs one subprocess (the second form) per stage and preset, so that each peak memory is that stage's
alone: on CPU ``ru_maxrss`` of the subprocess (it includes Python, torch and the imports, reported as
``baseline_mb`` in the JSON), on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. Every
timing has ``--warmup`` untimed calls first and is the median of ``--repeats`` timed calls (``torch.cuda.synchronize``
around each on CUDA). Where a stage has a reference, both run in the same subprocess on the same inputs, ours first.

Stages (``--stages``, default all):
  bas_train        BAS training step (forward + loss + backward + optimizer step, bas_seed.train.train_step) with
                   ``BASNet.background_scores`` (functional_call on layer4 with detached parameters) vs the released
                   BAS formulation, which deep-copies layer4 and the classifier in every forward pass
                   (``reference_background_scores``); the two losses are asserted equal on the same batch first.
  seed_export      bas_seed.export.seed_maps + bas_seed.threshold.search_threshold per image, as export.main does,
                   vs seed_maps alone (no search).
  ir_labels        irn.ir_labels.ir_label_from_seed (two dense-CRF passes) per image; CPU only (pydensecrf).
  irn_train        IRN training step (IRNet, irn.losses.irn_loss, irn.train.make_optimizer), as irn.train does.
  random_walk      irn.random_walk.random_walk vs the dense N x N formulation (tests.test_random_walk's
                   dense_random_walk_reference). At VOC size the dense walk takes ~15 min on CPU: without
                   ``--dense-voc`` both run at half the side there (the table says so) and ours also at full size.
  deeplab_train    DeepLabV2 training step in mmseg (``model.train_step``: forward + backward + SGD step).
  deeplab_predict  segment.inference.predict_label_map on one image (the config's test scales, flip and CRF).

Presets (rows): ``demo`` (configs/demo.yaml) and ``voc`` (configs/voc12.yaml); every model setting and size comes
from the YAML file; images are (min_side + max_side) / 2 square for the synthetic demo data and 375 x 500 for VOC.
Models are randomly initialised (no weights offline), 2 classes per image. ``--batch STAGE=N`` replaces the batch of
a training stage (the table states the batch used). ``--quick`` shrinks everything (ResNet-18, tiny crops and
images, 1 warm-up, 1 repeat) for the tests and the dry run of bench/gpu_check.sh.

Output: a Markdown table on stdout, or with ``--write-results`` in bench/RESULTS.md between ``<!-- speed:start -->``
and ``<!-- speed:end -->`` (``--marker`` renames the block; appended when absent); ``--json-out`` gets every raw
number, rewritten after every stage, and ``--render-json`` turns such a file back into the table.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results_block import replace_block  # noqa: E402

PRESETS = {"demo": "configs/demo.yaml", "voc": "configs/voc12.yaml"}
STAGES = ("bas_train", "seed_export", "ir_labels", "irn_train", "random_walk", "deeplab_train", "deeplab_predict")
TITLES = {"bas_train": "BAS training step", "seed_export": "seed export + threshold search",
          "ir_labels": "CRF IR labels", "irn_train": "IRN training step", "random_walk": "random walk",
          "deeplab_train": "DeepLab training step", "deeplab_predict": "DeepLab prediction"}
LEGEND = {
    "bas_train": "ours: BASNet.background_scores (functional_call, detached layer4); reference: deep copies of "
                 "layer4 and the classifier in every forward pass (released BAS); images/s of forward + loss + "
                 "backward + optimizer step",
    "seed_export": "ours: seed_maps + image-specific threshold search; reference: seed_maps alone (no search)",
    "random_walk": "ours: irn.random_walk (sparse CSR); reference: the dense N x N walk of IRN",
}
TRAIN_STAGES = {"bas_train", "irn_train", "deeplab_train"}
VOC_IMAGE = (375, 500)   # (H, W) of a typical VOC image (500 x 375)
K_CLASSES = 2            # ground-truth classes per image
QUICK_IMAGE = (40, 48)
QUICK_WALK = (24, 32)


# ---- settings of a preset -----------------------------------------------------------------------------------------

def load_preset(name: str, quick: bool = False, batches: dict | None = None) -> dict:
    """The config sections of a preset through the project's loaders (validated, defaults filled in) and the sizes
    the stages use; ``quick`` shrinks them, ``batches`` ({stage: N}) replaces the training batches."""
    import yaml

    from bas_seed.export import strided_size
    from bas_seed.train import parse_settings
    from segment.settings import load_settings
    from wsss_common.config import load_section

    with open(ROOT / PRESETS[name]) as f:
        config = yaml.safe_load(f)
    preset = {"name": name, "config": PRESETS[name], "class_names": list(config["data"]["class_names"]),
              "bas": parse_settings(config["bas"]), "seeds": load_section("seeds", config["seeds"]),
              "irn": load_section("irn", config["irn"]), "segment": load_settings(config["segment"])}
    synthetic = config["data"].get("synthetic")  # the demo's generated images, min_side..max_side square
    preset["image"] = VOC_IMAGE if not synthetic else ((synthetic["min_side"] + synthetic["max_side"]) // 2,) * 2
    if quick:
        preset["image"] = QUICK_IMAGE
        preset["bas"].update(depth=18, crop=32, batch_size=2)
        preset["irn"].update(backbone_depth=18, crop_size=96, batch_size=2)  # 24 x 24 labels: radius 10 fits
        preset["segment"].update(backbone_depth=18, backbone_base_channels=16, crop_size=33, batch_size=2)
    preset["walk"] = QUICK_WALK if quick else strided_size(*preset["image"])
    keys = {"bas_train": ("bas", "batch_size"), "irn_train": ("irn", "batch_size"),
            "deeplab_train": ("segment", "batch_size")}
    for stage, n in (batches or {}).items():
        section, key = keys[stage]
        preset[section][key] = int(n)
    return preset


def random_class_ids(num_fg: int, generator) -> list[int]:
    """K_CLASSES distinct foreground class ids in 1..num_fg, ascending."""
    import torch

    return sorted((torch.randperm(num_fg, generator=generator)[:K_CLASSES] + 1).tolist())


# ---- timing and memory --------------------------------------------------------------------------------------------

def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device, host: bool = False) -> float:
    """Peak CUDA memory allocated since the last ``reset_peak`` or (CPU, or ``host``) the process's peak RSS, MiB."""
    import torch

    if device.type == "cuda" and not host:
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_pair(ours, reference, device, args, images: int, host: bool = False,
                 reference_timing: tuple[int, int] | None = None) -> dict:
    """Time ``ours`` then ``reference`` (None: no reference), each with its own peak memory: the numbers of a row.

    On CPU the reference's peak is the process's peak so far, i.e. >= ours by construction. ``reference_timing``
    (warm-up, repeats) overrides the reference's counts (the dense walk at VOC size runs once)."""
    reset_peak(device)
    ours_times = timed(ours, device, args.warmup, args.repeats)
    row = {"images": images, "ours_times": ours_times, "ours_s": statistics.median(ours_times),
           "peak_mb": peak_mb(device, host)}
    row["ours_ips"] = images / row["ours_s"]
    row.update(ref_times=None, ref_s=None, ref_ips=None, ratio=None, ref_peak_mb=None)
    if reference is not None:
        warmup, repeats = reference_timing or (args.warmup, args.repeats)
        reset_peak(device)
        row["ref_times"] = timed(reference, device, warmup, repeats)
        row["ref_s"] = statistics.median(row["ref_times"])
        row["ref_ips"] = images / row["ref_s"]
        row["ratio"] = row["ours_ips"] / row["ref_ips"]
        row["ref_peak_mb"] = peak_mb(device, host)
    return row


def ref_peak_note(row: dict, device) -> str:
    if row["ref_peak_mb"] is None:
        return ""
    if device.type == "cuda" or row["ref_peak_mb"] > row["peak_mb"] + 1:
        return f"; reference peak {row['ref_peak_mb']:.0f} MB"
    return "; reference peak <= ours (CPU RSS)"


# ---- stage 1: BAS training step -----------------------------------------------------------------------------------

def reference_background_scores(model, x3, fg_map):
    """The released BAS background branch: layer4 and the classifier deep-copied in this forward pass (the copy of
    layer4 in train mode when BN uses batch statistics), run on the erased features; the copies' weight gradients
    and BN statistics are thrown away with them. Same value as ``BASNet.background_scores``."""
    layer4, classifier = copy.deepcopy(model.layer4), copy.deepcopy(model.classifier)
    layer4.train(model.training and model.background_bn == "batch")
    erased = x3.detach() * (1.0 - fg_map)
    return classifier(layer4(erased)).mean(dim=(2, 3))


@contextlib.contextmanager
def reference_formulation(model):
    """``model`` (a BASNet) with ``reference_background_scores`` in place of its background branch, so that its own
    forward (and bas_seed.train.train_step) runs the reference formulation."""
    model.background_scores = functools.partial(reference_background_scores, model)
    try:
        yield model
    finally:
        del model.background_scores


def bas_losses(model, images, labels, picked, settings: dict) -> tuple[float, float]:
    """(ours, reference) total BAS loss of one batch with the same weights (the state is restored after each, as a
    train-mode forward moves the BN running statistics)."""
    import torch

    from bas_seed.train import train_step

    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        ours, _ = train_step(model, "bas", images, labels, settings, picked)
        model.load_state_dict(state)
        with reference_formulation(model):
            reference, _ = train_step(model, "bas", images, labels, settings, picked)
        model.load_state_dict(state)
    return float(ours), float(reference)


def bas_batch(settings: dict, num_fg: int, device, memory_format, seed: int = 0):
    """Random images (B, 3, crop, crop), K_CLASSES-hot labels and the picked class of each image."""
    import torch

    from bas_seed import losses

    generator = torch.Generator().manual_seed(seed)
    b, crop = settings["batch_size"], settings["crop"]
    labels = torch.zeros(b, num_fg)
    for i in range(b):
        labels[i, [c - 1 for c in random_class_ids(num_fg, generator)]] = 1.0
    picked = losses.pick_classes(labels, generator)
    images = torch.randn(b, 3, crop, crop, generator=generator)
    return images.to(device, memory_format=memory_format), labels.to(device), picked.to(device)


def build_bas(settings: dict, num_fg: int):
    """The BASNet that bas_seed.train builds from these settings (random init)."""
    from bas_seed.model import build_model

    model_config = {"method": "bas", "depth": settings["depth"], "num_fg": num_fg,
                    "class_agnostic": bool(settings["class_agnostic"]),
                    "agnostic_backbone_gradient": bool(settings["agnostic_backbone_gradient"])}
    return build_model(model_config, background_bn=settings["background_bn"])


def stage_bas_train(preset: dict, device, args) -> dict:
    import numpy as np
    import torch

    from bas_seed.train import param_groups, train_step
    from wsss_common.training import make_optimizer

    s, num_fg = preset["bas"], len(preset["class_names"]) - 1
    model = build_bas(s, num_fg)
    groups = param_groups(model, s["lr"], s["new_layer_lr_mult"], train_biases=s["train_biases"],
                          generator_lr_mult=s["generator_lr_mult"])
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda and s["channels_last"] else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    optimizer = make_optimizer(groups, name=s["optimizer"], lr=s["lr"], weight_decay=s["weight_decay"],
                               momentum=s["momentum"], reference_momentum_quirk=s["reference_momentum_quirk"])
    amp = cuda and s["amp"]
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images, labels, picked = bas_batch(s, num_fg, device, memory_format)
    ours_loss, ref_loss = bas_losses(model, images, labels, picked, s)
    if not np.isclose(ours_loss, ref_loss, rtol=1e-4, atol=1e-6):
        raise AssertionError(f"reference BAS loss {ref_loss} != ours {ours_loss}")

    def step():  # one iteration of bas_seed.train's loop
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            total, _ = train_step(model, "bas", images, labels, s, picked)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    def reference_step():
        with reference_formulation(model):
            step()

    row = measure_pair(step, reference_step, device, args, images=s["batch_size"])
    row["ours_loss"], row["ref_loss"] = ours_loss, ref_loss
    row["notes"] = (f"ResNet-{s['depth']}, crop {s['crop']}, batch {s['batch_size']}, {s['optimizer']}, "
                    f"amp {'on' if amp else 'off'}, background BN {s['background_bn']}, class-agnostic "
                    f"{'on' if s['class_agnostic'] else 'off'}; loss ours {ours_loss:.6f} = reference "
                    f"{ref_loss:.6f}{ref_peak_note(row, device)}")
    return row


# ---- stage 2: seed export with and without the threshold search ---------------------------------------------------

def stage_seed_export(preset: dict, device, args) -> dict:
    import numpy as np
    import torch

    from bas_seed.export import search_grid, seed_maps
    from bas_seed.model import build_model
    from bas_seed.threshold import search_threshold, threshold_grid

    s, bas, num_fg = preset["seeds"], preset["bas"], len(preset["class_names"]) - 1
    search = s["threshold_search"]
    grid = search_grid(s)
    if grid is None:  # search disabled in the config: measure it on the configured grid all the same
        grid = threshold_grid(search["start"], search["stop"], search["step"])
    model = build_bas(bas, num_fg).to(device).eval()
    cam_model = None
    if s["fuse_cam"]:
        cam_model = build_model({"method": "cam", "depth": bas["depth"], "num_fg": num_fg}).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    class_ids = random_class_ids(num_fg, generator)
    h, w = preset["image"]
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    channels = torch.tensor([c - 1 for c in class_ids], dtype=torch.long, device=device)
    parts: list[tuple[float, float]] = []

    def export_and_search():  # export.main's per-image body with the search on
        synchronize(device)
        start = time.perf_counter()
        _, high_res, x3, _ = seed_maps(model, image, class_ids, s, device, cam_model, keep_features=True)
        high_res = high_res.float()
        synchronize(device)
        mid = time.perf_counter()
        search_threshold(model.classify, x3, high_res, channels, grid, ac_weight=search["ac_weight"],
                         chunk=search["chunk"])
        synchronize(device)
        parts.append((mid - start, time.perf_counter() - mid))

    def export_only():
        seed_maps(model, image, class_ids, s, device, cam_model)[1].float()

    row = measure_pair(export_and_search, export_only, device, args, images=1)
    timed_parts = parts[-args.repeats:]
    row["maps_s"] = statistics.median(p[0] for p in timed_parts)
    row["search_s"] = statistics.median(p[1] for p in timed_parts)
    row["search_cost"] = row["ours_s"] / row["ref_s"]
    row["notes"] = (f"{h}x{w}, ResNet-{bas['depth']}, scales {s['scales']}, grid {grid[0]:.2f}..{grid[-1]:.2f} "
                    f"step {search['step']:.2f} ({len(grid)}), fusion {s['foreground_fusion']}, fuse_cam "
                    f"{'on' if s['fuse_cam'] else 'off'}; maps {row['maps_s']:.4f} s/img, search "
                    f"{row['search_s']:.4f} s/img, export alone {row['ref_s']:.4f} s/img: (export+search)/export "
                    f"= {row['search_cost']:.2f}x")
    return row


# ---- stage 3: CRF IR labels ---------------------------------------------------------------------------------------

def crf_thresholds(irn: dict) -> tuple[float, float, str]:
    """irn.fg_threshold / bg_threshold; ``auto`` (resolved from the seeds by irn.thresholds in the DAG) becomes the
    reference 0.30 / 0.17 here: the CRF's cost does not depend on them."""
    fg, bg = irn["fg_threshold"], irn["bg_threshold"]
    note = ""
    if not isinstance(fg, (int, float)) or not isinstance(bg, (int, float)):
        note = f" (config {fg}/{bg}: 0.30/0.17 used)"
        fg = fg if isinstance(fg, (int, float)) else 0.30
        bg = bg if isinstance(bg, (int, float)) else 0.17
    return float(fg), float(bg), note


def stage_ir_labels(preset: dict, device, args) -> dict:
    import numpy as np
    import torch

    from bench.bench_random_walk import synthetic_inputs
    from irn.ir_labels import ir_label_from_seed

    irn, num_fg = preset["irn"], len(preset["class_names"]) - 1
    h, w = preset["image"]
    keys = np.asarray(random_class_ids(num_fg, torch.Generator().manual_seed(0)), np.int64)
    high_res = synthetic_inputs(len(keys), h, w, seed=0)[0].numpy()
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    fg, bg, note = crf_thresholds(irn)

    def labels():
        ir_label_from_seed(image, high_res, keys, fg_threshold=fg, bg_threshold=bg, crf=irn["crf"])

    row = measure_pair(labels, None, device, args, images=1, host=True)
    row["notes"] = (f"{h}x{w}, 2 CRF passes x {irn['crf']['iterations']} iterations, thresholds {fg:.2f}/{bg:.2f}"
                    f"{note}; CPU only (pydensecrf), peak = RSS")
    return row


# ---- stage 4: IRN training step -----------------------------------------------------------------------------------

def ir_label_batch(b: int, size: int, class_ids: list[int], generator):
    """(B, size, size) uint8 stride-4 IR labels: 4 x 4 blocks of 0, a class id or 255 (unsure)."""
    import torch

    values = torch.tensor([0, *class_ids, 255], dtype=torch.uint8)
    blocks = torch.randint(0, len(values), (b, size // 4 + 1, size // 4 + 1), generator=generator)
    return values[blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, :size, :size]]


def stage_irn_train(preset: dict, device, args) -> dict:
    import torch

    from irn.losses import affinity_labels, irn_loss
    from irn.model import IRNet
    from irn.path_index import build_path_index, path_indices
    from irn.train import make_optimizer

    s, num_fg = preset["irn"], len(preset["class_names"]) - 1
    crop, b = s["crop_size"], s["batch_size"]
    # random init (irn.train.build_model refuses a frozen random backbone; the cost is the same)
    model = IRNet(depth=s["backbone_depth"], imagenet_weights=None, freeze_backbone=s["freeze_backbone"])
    model = model.to(device).train()
    optimizer = make_optimizer(model, s)
    path_index = build_path_index(s["train_radius"])
    indices = path_indices(path_index, crop // 4, crop // 4, device=device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(b, 3, crop, crop, generator=generator).to(device)
    labels = ir_label_batch(b, crop // 4, random_class_ids(num_fg, generator), generator).to(device)
    amp = bool(s["amp"]) and device.type == "cuda"

    def step():  # one iteration of irn.train's loop
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            edge_logits, displacement = model(images)
        loss, _ = irn_loss(edge_logits, displacement, affinity_labels(labels, indices), path_index, indices)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    row = measure_pair(step, None, device, args, images=b)
    row["notes"] = (f"ResNet-{s['backbone_depth']} {'frozen' if s['freeze_backbone'] else 'trained'}, crop {crop}, "
                    f"batch {b}, radius {s['train_radius']}, amp {'bf16' if amp else 'off'}")
    return row


# ---- stage 5: random walk -----------------------------------------------------------------------------------------

def stage_random_walk(preset: dict, device, args) -> dict:
    from bench.bench_random_walk import synthetic_inputs
    from irn.random_walk import random_walk
    from tests.test_random_walk import dense_random_walk_reference

    irn = preset["irn"]
    options = {"radius": irn["rw_radius"], "beta": irn["beta"], "exp_times": irn["exp_times"]}
    full = tuple(preset["walk"])
    small = full if args.dense_voc or full[0] * full[1] <= 64 * 64 else tuple(-(-n // 2) for n in full)
    cams, boundary = (t.to(device) for t in synthetic_inputs(K_CLASSES, *small, seed=0))
    walked = {}

    def ours():
        walked["ours"] = random_walk(cams, boundary, **options)

    def dense():
        walked["dense"] = dense_random_walk_reference(cams, boundary, **options)

    # the dense walk takes minutes on CPU: there it runs once, without warm-up; on CUDA with the usual counts
    dense_timing = None if device.type == "cuda" else (0, 1)
    row = measure_pair(ours, dense, device, args, images=1, reference_timing=dense_timing)
    scale = walked["dense"].abs().max()
    row["max_rel_diff"] = float((walked["ours"] - walked["dense"]).abs().max() / scale)
    row["size"], row["full_size"] = list(small), list(full)
    detail = (f"radius {options['radius']}, {2 ** options['exp_times']} steps, max rel. diff "
              f"{row['max_rel_diff']:.1e}")
    notes = f"{small[0]}x{small[1]} map, {detail}"
    if small != full:
        cams, boundary = (t.to(device) for t in synthetic_inputs(K_CLASSES, *full, seed=0))
        row["ours_full_s"] = statistics.median(timed(ours, device, args.warmup, args.repeats))
        notes = (f"both at {small[0]}x{small[1]}, half of VOC's {full[0]}x{full[1]} (--dense-voc for full size); "
                 f"ours at {full[0]}x{full[1]}: {1 / row['ours_full_s']:.4g} img/s; {detail}")
    row["notes"] = notes + ref_peak_note(row, device)
    return row


# ---- stage 6: DeepLab training step and prediction ----------------------------------------------------------------

def build_segmenter(preset: dict, device):
    """(model, filled-in mmseg config) as segment.train builds them (random init: no weights offline)."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from segment.settings import build_mmseg_config

    register_all_modules(init_default_scope=True)
    import segment.registry_modules  # noqa: F401

    work = Path(tempfile.mkdtemp(prefix="speed_seg_"))
    cfg = build_mmseg_config(preset["segment"], voc_root=work, index_file=work / "index.json",
                             class_names=preset["class_names"], work_dir=work)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device), cfg


def segment_notes(preset: dict) -> str:
    s = preset["segment"]
    return f"{Path(s['model_config']).name} ResNet-{s['backbone_depth']} width {s['backbone_base_channels']}"


def stage_deeplab_train(preset: dict, device, args) -> dict:
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    s = preset["segment"]
    model, cfg = build_segmenter(preset, device)
    model.train()
    # one SGD step per batch (the configs' accumulation_steps only delay the step)
    wrapper = build_optim_wrapper(model, dict(cfg.optim_wrapper, accumulative_counts=1))
    crop, b = s["crop_size"], s["batch_size"]
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(b):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, len(preset["class_names"]), (1, crop, crop),
                                                         generator=generator))
        samples.append(sample)
    data = {"inputs": [torch.randint(0, 256, (3, crop, crop), generator=generator).float() for _ in range(b)],
            "data_samples": samples}

    def step():  # the runner's iteration: preprocess (to the device), forward, loss, backward, SGD step
        model.train_step(data, wrapper)

    row = measure_pair(step, None, device, args, images=b)
    row["notes"] = (f"{segment_notes(preset)}, crop {crop}, batch {b}, random labels, 1 SGD step per batch "
                    f"(config: accumulation {s['accumulation_steps']})")
    return row


def stage_deeplab_predict(preset: dict, device, args) -> dict:
    import numpy as np

    from segment.inference import class_probabilities, image_to_input, predict_label_map

    predict = preset["segment"]["predict"]
    crf = "on" if predict["crf"]["enabled"] else "off"
    if predict["crf"]["enabled"] and importlib.util.find_spec("pydensecrf") is None:
        predict = {**predict, "crf": {**predict["crf"], "enabled": False}}  # the network's time is still worth having
        crf = "on in the config, SKIPPED here (no pydensecrf)"
    model, _ = build_segmenter(preset, device)
    model.eval()
    h, w = preset["image"]
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)

    def prediction():
        predict_label_map(model, rgb, device, predict)

    row = measure_pair(prediction, None, device, args, images=1)
    network = statistics.median(timed(lambda: class_probabilities(
        model, image_to_input(rgb, model, device), predict["scales"], predict["flip"]), device, 1, args.repeats))
    row["network_s"] = network
    row["notes"] = (f"{h}x{w}, {segment_notes(preset)}, scales {predict['scales']}, flip "
                    f"{'on' if predict['flip'] else 'off'}, CRF {crf}; network alone {1 / network:.4g} img/s")
    return row


STAGE_FUNCTIONS = {"bas_train": stage_bas_train, "seed_export": stage_seed_export, "ir_labels": stage_ir_labels,
                   "irn_train": stage_irn_train, "random_walk": stage_random_walk,
                   "deeplab_train": stage_deeplab_train, "deeplab_predict": stage_deeplab_predict}


def measure(args) -> dict:
    """One stage of one preset, in this process (the ``--stage`` form)."""
    import torch

    from wsss_common.devices import select_device
    from wsss_common.training import seed_everything

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    seed_everything(0)
    preset = load_preset(args.preset, args.quick, parse_batches(args.batch))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = STAGE_FUNCTIONS[args.stage](preset, device, args)
    row.update(stage=args.stage, preset=args.preset, device=str(device), threads=args.threads,
               baseline_mb=baseline, torch=torch.__version__, warmup=args.warmup, repeats=args.repeats,
               cuda_name=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    return row


# ---- the driver: one subprocess per stage, the table --------------------------------------------------------------

def parse_batches(items: list[str] | None) -> dict:
    batches = {}
    for item in items or []:
        stage, _, n = item.partition("=")
        if stage not in TRAIN_STAGES or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--batch {item!r}: expected STAGE=N with STAGE one of {sorted(TRAIN_STAGES)}")
        batches[stage] = int(n)
    return batches


def child_command(args, stage: str, preset: str, json_path: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--preset", preset, "--json",
           str(json_path), "--device", args.device, "--threads", str(args.threads), "--warmup", str(args.warmup),
           "--repeats", str(args.repeats)]
    cmd += ["--quick"] * args.quick + ["--dense-voc"] * args.dense_voc
    return cmd + (["--batch", *args.batch] if args.batch else [])


def run_stage(args, stage: str, preset: str, log: Path | None) -> dict:
    """Measure one stage in a subprocess; a failed one gives a row that says so (its log's last line)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # mmengine/mmseg pick cuda whenever torch sees one
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "row.json"
        start = time.perf_counter()
        proc = subprocess.run(child_command(args, stage, preset, json_path), cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        if log is not None:
            with open(log, "a") as f:
                f.write(f"==== {preset} {stage}: exit {proc.returncode}, {seconds:.1f} s ====\n{proc.stdout}\n")
        print(f"[speed] {preset} {stage}: {'ok' if proc.returncode == 0 else 'FAILED'} in {seconds:.1f} s",
              file=sys.stderr, flush=True)
        if proc.returncode != 0 or not json_path.is_file():
            tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ["no output"]
            return {"stage": stage, "preset": preset, "failed": True, "error": tail[0][-300:],
                    "wall_s": seconds}
        row = json.loads(json_path.read_text())
    row["wall_s"] = seconds
    return row


def fmt(value, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def machine_header(rows: list[dict], args) -> dict:
    """What the numbers were measured on and with."""
    def text(cmd):
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    from wsss_common.devices import describe_machine

    cpu = describe_machine(include_gpu=False)  # the GPU is named by cuda_name
    commit = text(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    if text(["git", "status", "--porcelain"]):
        commit += "+dirty"
    done = [r for r in rows if not r.get("failed")]
    return {"platform": platform.platform(), "cpu": cpu, "nproc": text(["nproc", "--all"]) or str(os.cpu_count()),
            "torch": done[0]["torch"] if done else "unknown", "device": args.device,
            "cuda_name": next((r["cuda_name"] for r in done if r.get("cuda_name")), None), "threads": args.threads,
            "commit": commit, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "warmup": args.warmup, "repeats": args.repeats, "quick": bool(args.quick)}


def render(header: dict, rows: list[dict]) -> str:
    device = header["device"] + (f" ({header['cuda_name']})" if header["cuda_name"] else "")
    lines = [f"Speed per stage (`bench/speed.py`): {header['platform']}, {header['cpu']}, nproc {header['nproc']}; "
             f"torch {header['torch']}; device {device}; {header['threads']} torch thread(s); commit "
             f"{header['commit']}; {header['date']}. Median of {header['repeats']} after {header['warmup']} "
             f"warm-up call(s){'; --quick (tiny sizes)' if header['quick'] else ''}. Peak MB: "
             + ("max CUDA memory allocated" if header["device"] == "cuda" else "max RSS of the stage's process")
             + ". Ratio = ours img/s / reference img/s.", "",
             "| stage | preset | ours img/s | reference img/s | ratio | peak MB | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        title = TITLES[r["stage"]]
        if r.get("failed"):
            error = r["error"].replace("|", "/")
            lines.append(f"| {title} | {r['preset']} | – | – | – | – | FAILED: {error} |")
            continue
        lines.append(f"| {title} | {r['preset']} | {fmt(r['ours_ips'])} | {fmt(r['ref_ips'])} | "
                     f"{fmt(r['ratio'], '.3g')} | {fmt(r['peak_mb'], '.0f')} | {r['notes']} |")
    stages = dict.fromkeys(r["stage"] for r in rows)
    legend = [f"- {TITLES[s]}: {LEGEND[s]}" for s in stages if s in LEGEND]
    return "\n".join(lines + ([""] + legend if legend else [])) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in each stage's process")
    p.add_argument("--presets", nargs="+", choices=tuple(PRESETS), default=list(PRESETS))
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up and 1 repeat (tests, dry runs)")
    p.add_argument("--dense-voc", action="store_true", help="the dense random walk at VOC size (~15 min on CPU)")
    p.add_argument("--batch", nargs="+", metavar="STAGE=N", help=f"batch of a training stage {sorted(TRAIN_STAGES)}")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 2, quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls, median reported (default 5, quick 1)")
    p.add_argument("--write-results", action="store_true", help="write the table into --results instead of stdout")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("--marker", default="speed", help="block name in --results (e.g. speed-gpu for the GPU table)")
    p.add_argument("--render-json", metavar="FILE", help="no measurement: the table of a --json-out file")
    p.add_argument("--json-out", help="every raw number, as JSON")
    p.add_argument("--log", help="append each stage's output to this file")
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--preset", choices=tuple(PRESETS), help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.warmup = (1 if args.quick else 2) if args.warmup is None else args.warmup
    args.repeats = (1 if args.quick else 5) if args.repeats is None else args.repeats
    parse_batches(args.batch)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stage:  # one measurement, in this process
        if not (args.preset and args.json):
            raise SystemExit("--stage needs --preset and --json")
        Path(args.json).write_text(json.dumps(measure(args)))
        return 0
    if args.render_json:  # the table of an earlier run (one cut short keeps the stages it finished)
        raw = json.loads(Path(args.render_json).read_text())
        header, rows = raw["header"], raw["rows"]
    else:
        log = Path(args.log) if args.log else None
        rows = []
        for preset in args.presets:
            for stage in args.stages:
                rows.append(run_stage(args, stage, preset, log))
                if args.json_out:  # after every stage: a run killed half-way keeps what it measured
                    Path(args.json_out).write_text(json.dumps({"header": machine_header(rows, args),
                                                               "rows": rows}, indent=1))
        header = machine_header(rows, args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    table = render(header, rows)
    if args.write_results:
        replace_block(Path(args.results), table, args.marker)
        print(f"wrote {args.results}", file=sys.stderr)
    else:
        print(table, end="")
    return 1 if any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
