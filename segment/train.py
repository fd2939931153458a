"""Train DeepLabV2 in mmsegmentation on the pseudo masks (never the ground truth).

    python -m segment.train --voc-root ROOT --pseudo-masks results/E/pseudo_masks/index.json \
        --class-names JSON --settings JSON --work-dir results/E/segment/work --out results/E/segment/model.pth \
        [--resume] [--device auto|cpu|cuda] [--threads N]

The mmseg config file named by ``segment.model_config`` is loaded and filled in from the settings; an mmengine
Runner trains it, writing resumable checkpoints and its log lines (progress with ETA) into the work dir and to
stderr. ``--resume`` continues from the work dir's last checkpoint when that run had the same settings and inputs
(a fingerprint in ``run_fingerprint.json``), else it starts afresh. At the end the weights and the filled-in config
go atomically to ``--out`` (an mmengine checkpoint: ``meta`` + ``state_dict``, plain types only) and a summary,
including which initial weights were used, to ``<out>.json`` (model.json), and the flat ``model_card.json`` beside
it that the val metrics carry.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

from wsss_common.io import DataError, atomic_path, read_json, write_json_atomic

FINGERPRINT_FILE = "run_fingerprint.json"
FINAL_FORMAT = "wsss-segment-model/1"
CARD_NAME = "model_card.json"


def inputs_fingerprint(settings: dict, class_names: list[str], index_file: str | Path,
                       bas_checkpoint: str | Path | None = None) -> dict:
    """What a resumed run must share with the interrupted one: settings, classes, the pseudo masks' bytes and the
    BAS checkpoint's bytes (``segment.init.from_bas``)."""
    from wsss_common.shards import load_index

    digest = hashlib.sha256()
    for image_id, path in sorted(load_index(index_file).items()):
        digest.update(image_id.encode())
        try:
            digest.update(Path(path).read_bytes())
        except FileNotFoundError:
            raise DataError(f"pseudo mask of {image_id} (listed in {index_file}) not found: {path}") from None
    bas_sha = hashlib.sha256(Path(bas_checkpoint).read_bytes()).hexdigest() if bas_checkpoint else None
    return {"settings": settings, "class_names": list(class_names), "pseudo_masks_sha256": digest.hexdigest(),
            "bas_checkpoint_sha256": bas_sha}


def latest_checkpoint(work_dir: Path) -> Path | None:
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        return None
    path = Path(marker.read_text().strip())
    return path if path.is_file() else None


def clear_checkpoints(work_dir: Path) -> None:
    """Remove the resumable state of an earlier, different run (only files this stage's runner writes)."""
    for p in list(work_dir.glob("iter_*.pth")) + [work_dir / "last_checkpoint", work_dir / FINGERPRINT_FILE]:
        if p.is_file():
            p.unlink()


def allow_checkpoint_globals() -> None:
    """Let torch >= 2.6 load mmengine's resumable checkpoints with ``weights_only=True`` (no fallback): allowlist
    the plain numpy/mmengine types they hold (message-hub HistoryBuffers, numpy scalars and arrays)."""
    import numpy as np
    import torch
    from mmengine.runner.checkpoint import get_torch_safe_globals

    extra = [type(np.dtype(t)) for t in (np.float16, np.float32, np.int32, np.int8, np.uint8, np.bool_)]
    torch.serialization.add_safe_globals(get_torch_safe_globals() + extra)


def prepare_init(cfg, settings: dict, work_dir: Path, bas_checkpoint: str | Path | None = None) -> dict:
    """Convert/check the configured initial weights against the model and save them in mmseg form for the runner's
    ``load_from``. Returns the init record that model.json carries."""
    import torch
    from mmseg.registry import MODELS

    from .init_weights import (convert_bas_state_dict, convert_state_dict, match_init_state, read_bas_state_dict,
                               read_state_dict)

    init = settings["init"]
    record = {"name": init["name"], "checkpoint": init["checkpoint"], "load_head": init["load_head"],
              "from_bas": init["from_bas"]}
    if init["from_bas"]:
        if init["checkpoint"] is not None:
            raise ValueError("config keys segment.init.from_bas and segment.init.checkpoint exclude each other: "
                             "the backbone starts from the BAS network or from the checkpoint, not both")
        if not bas_checkpoint:
            raise ValueError("config key segment.init.from_bas is true but no BAS checkpoint was given "
                             "(segment.train --bas-checkpoint)")
        path = Path(bas_checkpoint)
        converted, unmapped = convert_bas_state_dict(read_bas_state_dict(path))
        record["checkpoint"] = str(path)
    elif init["checkpoint"] is None:
        backbone = cfg.model.backbone
        if backbone.get("norm_eval") or not backbone.get("norm_cfg", {}).get("requires_grad", True):
            raise ValueError(f"config key segment.init.checkpoint is null (from scratch) but "
                             f"{settings['model_config']} freezes BN, which then has no statistics; give init "
                             "weights or use a config with trainable BN (configs/segment/*scratch.py)")
        if init["name"] != "scratch":
            raise ValueError(f"config key segment.init.name is {init['name']!r} but segment.init.checkpoint is "
                             "null (training from scratch); name it 'scratch' or give the checkpoint")
        record["source"] = "random init (mmseg init_cfg), no pretrained weights"
        return record
    else:
        path = Path(init["checkpoint"])
        converted, unmapped = convert_state_dict(read_state_dict(path))
    model_state = MODELS.build(cfg.model).state_dict()
    selected, report = match_init_state(model_state, converted, load_head=init["load_head"], source=str(path))
    record.update(report, unmapped_keys=unmapped[:20], sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    converted_path = work_dir / "init_weights.pth"
    with atomic_path(converted_path) as tmp:
        torch.save({"meta": {"source": str(path)}, "state_dict": selected}, tmp)
    cfg.load_from = str(converted_path)
    return record


def export_final(runner, cfg, out: Path, summary: dict) -> None:
    """Weights + filled-in config (plain types only, loadable with weights_only=True), written atomically."""
    import torch
    from mmengine.model import is_model_wrapper

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if broken:  # a diverged run would otherwise predict one class everywhere and report a val mIoU for it
        raise DataError(f"segment training diverged: {len(broken)} weight tensors are not finite (e.g. {broken[:3]}); "
                        "lower segment.lr (the run's log is in the rule's log file)")
    meta = {"format": FINAL_FORMAT, "config": cfg.pretty_text, "iter": int(runner.iter),
            "init": json.dumps(summary["init"])}
    with atomic_path(out) as tmp:
        torch.save({"meta": meta, "state_dict": state}, tmp)
    write_json_atomic(out.with_suffix(".json"), summary)
    write_json_atomic(out.with_name(CARD_NAME), model_card(summary))


def model_card(summary: dict) -> dict:
    """Flat scalars about the trained model that the val metrics carry (``evaluate --extra-from``), so a reported
    number always states its init."""
    init = summary["init"]
    return {"segmenter_init": init["name"], "segmenter_init_checkpoint": init["checkpoint"],
            "segmenter_init_sha256": init.get("sha256"), "segmenter_model_config": summary["model_config"],
            "segmenter_backbone": f"ResNet-{summary['backbone_depth']} (base width "
                                  f"{summary['backbone_base_channels']})",
            "segmenter_iterations": summary["iterations"],
            "segmenter_class_weight": class_weight_kind(summary["settings"].get("class_weight"))}


def class_weight_kind(setting) -> str:
    """How the loss was weighted, for the card: none, the method's name, or given (a list in the config)."""
    return "none" if setting is None else setting if isinstance(setting, str) else "given"


def train(*, voc_root: str, pseudo_masks: str, class_names: list[str], settings: dict, work_dir: str | Path,
          out: str | Path, resume: bool = False, extra_hooks: list[dict] | None = None,
          bas_checkpoint: str | Path | None = None) -> dict:
    """Run (or resume) the training and export the final model; returns the summary written to model.json."""
    from mmengine.runner import Runner
    from mmseg.utils import register_all_modules

    from .class_balance import resolve_class_weight
    from .settings import build_mmseg_config

    register_all_modules(init_default_scope=True)
    import segment.registry_modules  # noqa: F401

    work_dir, out = Path(work_dir), Path(out)
    work_dir.mkdir(parents=True, exist_ok=True)
    class_weight = resolve_class_weight(settings["class_weight"], pseudo_masks, len(class_names))
    if class_weight is not None:
        print(f"cross-entropy class weights ({class_weight_kind(settings['class_weight'])}): " + ", ".join(f"{n} {w:.3f}" for n, w in zip(class_names, class_weight)), file=sys.stderr)
    cfg = build_mmseg_config(settings, voc_root=voc_root, index_file=pseudo_masks, class_names=class_names,
                             work_dir=work_dir, class_weight=class_weight)
    if class_weight is not None:
        # with class weights the decode loss runs with avg_non_ignore off (see build_mmseg_config), where mmseg warns
        # that the mean would count ignored pixels; with weights it does not (it divides by their weights)
        warnings.filterwarnings("ignore", message="Default ``avg_non_ignore`` is False")
    if extra_hooks:
        cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + list(extra_hooks)
    fingerprint = inputs_fingerprint(settings, class_names, pseudo_masks, bas_checkpoint)
    fp_path = work_dir / FINGERPRINT_FILE
    checkpoint = latest_checkpoint(work_dir)
    resuming = False
    if checkpoint is not None:
        same = fp_path.is_file() and read_json(fp_path) == json.loads(json.dumps(fingerprint))
        if resume and same:
            resuming = True
            print(f"resuming from {checkpoint}", file=sys.stderr)
        else:
            why = "settings or pseudo masks changed" if resume else "--resume not given"
            print(f"starting afresh ({why}); removing the checkpoints in {work_dir}", file=sys.stderr)
            clear_checkpoints(work_dir)
    init_record = prepare_init(cfg, settings, work_dir, bas_checkpoint)
    write_json_atomic(fp_path, fingerprint)
    if resuming:
        allow_checkpoint_globals()
        cfg.load_from = str(checkpoint)
        cfg.resume = True
    # mmengine keys its process-wide Visualizer, MMLogger and DefaultScope by experiment name, which is the config's
    # stem plus a one-second timestamp: a second Runner within that second (tests, a notebook) would get the first
    # run's instances and write its config and log into the first run's work dir. A unique name per run avoids it.
    cfg.experiment_name = f"{Path(settings['model_config']).stem}_{uuid.uuid4().hex[:8]}"
    started = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    summary = {"format": FINAL_FORMAT, "model_config": settings["model_config"],
               "backbone_depth": settings["backbone_depth"],
               "backbone_base_channels": settings["backbone_base_channels"], "init": init_record,
               "iterations": settings["iterations"], "class_weight": class_weight,
               "runner_iterations": int(runner.iter),
               "resumed_from": str(checkpoint) if resuming else None,
               "train_seconds_this_run": round(time.time() - started, 1),
               "train_images": len(runner.train_dataloader.dataset), "settings": settings}
    export_final(runner, cfg, out, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voc-root", required=True, help="VOC2012 folder (JPEGImages/<id>.jpg)")
    p.add_argument("--pseudo-masks", required=True, help="wsss-index/1 of the train pseudo masks (PNG)")
    p.add_argument("--class-names", required=True, help="JSON list: data.class_names (background first)")
    p.add_argument("--settings", default="{}", help="JSON object: the config section `segment`")
    p.add_argument("--work-dir", required=True, help="mmengine work dir (checkpoints, logs)")
    p.add_argument("--out", required=True, help="final weights (model.pth); a summary goes to <out>.json")
    p.add_argument("--bas-checkpoint",
                   help="bas_seed model.pt whose ResNet starts the backbone (segment.init.from_bas)")
    p.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoint")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args(argv)

    from .settings import load_settings

    settings = load_settings(args.settings)
    try:
        class_names = json.loads(args.class_names)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--class-names is not a JSON list: {e}")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # mmengine picks cuda whenever torch sees one
    from wsss_common.devices import select_device, set_threads

    print(f"device: {select_device(args.device)}", file=sys.stderr)
    set_threads(args.threads)
    summary = train(voc_root=args.voc_root, pseudo_masks=args.pseudo_masks, class_names=class_names,
                    settings=settings, work_dir=args.work_dir, out=args.out, resume=args.resume,
                    bas_checkpoint=args.bas_checkpoint)
    print(json.dumps({k: summary[k] for k in ("init", "runner_iterations", "train_seconds_this_run")}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
