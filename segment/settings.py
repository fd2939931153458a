"""The stage's settings (config section ``segment``): validation against workflow/schemas/segment.schema.yaml with its
defaults filled in, and the translation into a filled-in mmseg/mmengine config."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "segment.schema.yaml"


def _fill_defaults(schema: dict, value: Any) -> Any:
    if schema.get("type") == "object" and isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _fill_defaults(sub, value[key])
    return value


def load_settings(settings: str | dict) -> dict:
    """Parse (JSON string) and validate the section; missing keys get the schema's defaults. Errors name the key."""
    import jsonschema

    if isinstance(settings, str):
        try:
            settings = json.loads(settings)
        except json.JSONDecodeError as e:
            raise ValueError(f"--settings is not valid JSON: {e}") from None
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    value = _fill_defaults(schema, copy.deepcopy(settings))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        key = ".".join(["segment", *map(str, e.path)])
        raise ValueError(f"config key {key}: {e.message}")
    return value


def resolve_repo_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def build_mmseg_config(settings: dict, *, voc_root: str | Path, index_file: str | Path, class_names: list[str],
                       work_dir: str | Path):
    """Load ``settings['model_config']`` and fill in data, sizes and schedule from the settings.

    Iteration counts in the settings are optimizer updates; the runner's ``max_iters``, the scheduler's ``end`` and
    ``step_size`` and the checkpoint interval are in runner iterations (batches) = updates x accumulation_steps, so
    a checkpoint never falls inside a gradient-accumulation window.
    """
    from mmengine.config import Config

    from .models import head_in_channels

    config_path = resolve_repo_path(settings["model_config"])
    if not config_path.is_file():
        raise FileNotFoundError(f"config key segment.model_config: mmseg config file not found: {config_path}")
    cfg = Config.fromfile(str(config_path))
    if len(class_names) < 2:
        raise ValueError(f"class names must list background and at least one class, got {class_names}")

    accumulate = settings["accumulation_steps"]
    runner_iters = settings["iterations"] * accumulate
    crop = (settings["crop_size"], settings["crop_size"])
    depth, width = settings["backbone_depth"], settings["backbone_base_channels"]

    cfg.model.backbone.depth = depth
    cfg.model.backbone.base_channels = width
    cfg.model.backbone.stem_channels = width
    cfg.model.decode_head.in_channels = head_in_channels(depth, width)
    cfg.model.decode_head.num_classes = len(class_names)
    cfg.model.data_preprocessor.size = crop
    cfg.data_preprocessor = cfg.model.data_preprocessor
    cfg.crop_size = crop

    pipeline = []
    for step in cfg.train_pipeline:
        step = copy.deepcopy(step)
        if step["type"] == "RandomChoice":
            step["transforms"] = [[dict(type="Resize", scale_factor=float(s), keep_ratio=False)]
                                  for s in settings["train_scales"]]
        elif step["type"] == "RandomCrop":
            step["crop_size"] = crop
        pipeline.append(step)
    cfg.train_pipeline = pipeline

    loader = cfg.train_dataloader
    loader.batch_size = settings["batch_size"]
    loader.num_workers = settings["num_workers"]
    loader.persistent_workers = settings["num_workers"] > 0 and loader.get("persistent_workers", False)
    loader.dataset.index_file = str(index_file)
    loader.dataset.image_dir = str(Path(voc_root) / "JPEGImages")
    loader.dataset.metainfo = dict(classes=tuple(class_names))
    loader.dataset.pipeline = pipeline
    loader.dataset.augment_seed = settings["seed"]

    cfg.optim_wrapper.optimizer.lr = settings["lr"]
    cfg.optim_wrapper.accumulative_counts = accumulate
    for sched in cfg.param_scheduler:
        sched.end = runner_iters
        if sched.get("type") == "StepwisePolyLR":
            sched.step_size = settings["lr_update_interval"] * accumulate
    cfg.train_cfg.max_iters = runner_iters
    cfg.train_cfg.val_interval = runner_iters + 1
    cfg.default_hooks.checkpoint.interval = settings["checkpoint_interval"] * accumulate
    cfg.default_hooks.logger.interval = settings["log_interval"]
    cfg.randomness = dict(seed=settings["seed"])
    cfg.work_dir = str(work_dir)
    cfg.load_from = None
    cfg.resume = False
    return cfg
