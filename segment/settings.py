"""The stage's settings (config section ``segment``): validation against workflow/schemas/segment.schema.yaml with its
defaults filled in (the project's one loader, ``wsss_common.config.load_section``), and the translation into a
filled-in mmseg/mmengine config."""
from __future__ import annotations

import copy
from pathlib import Path

from wsss_common.config import load_section

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_settings(settings: str | dict) -> dict:
    """The section ``segment`` (a JSON string or a dict) validated, with the schema's defaults filled in; a thin
    wrapper of ``wsss_common.config.load_section("segment", ...)``, whose ``ConfigError`` (a ValueError) names the
    key (``config key segment.crop_size: ...``)."""
    return load_section("segment", settings)


def resolve_repo_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def build_mmseg_config(settings: dict, *, voc_root: str | Path, index_file: str | Path, class_names: list[str],
                       work_dir: str | Path, class_weight: list[float] | None = None):
    """Load ``settings['model_config']`` and fill in data, sizes and schedule from the settings, and the decode
    loss's ``class_weight`` (one per class, resolved from ``segment.class_weight`` by segment.class_balance).

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
        if step["type"] == "DeepLabRandomScale":
            step["scales"] = [float(s) for s in settings["train_scales"]]
        elif step["type"] == "DeepLabPadToCrop":
            step["crop_size"] = crop
            # 0 after mean subtraction; the pipeline's image is BGR, the preprocessor's mean is in its input order
            mean = [float(v) for v in cfg.model.data_preprocessor.mean]
            step["img_pad"] = mean[::-1] if cfg.model.data_preprocessor.get("bgr_to_rgb") else mean
        elif step["type"] == "RandomCrop":
            step["crop_size"] = crop
        pipeline.append(step)
    for needed, key in (("DeepLabRandomScale", "train_scales"), ("DeepLabPadToCrop", "crop_size")):
        if not any(step["type"] == needed for step in pipeline):
            raise ValueError(f"config key segment.{key} cannot be applied: the train_pipeline of {config_path} has "
                             f"no {needed} step")
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

    if class_weight is not None:
        loss = cfg.model.decode_head.loss_decode
        if not isinstance(loss, dict) or len(class_weight) != len(class_names):
            raise ValueError(f"config key segment.class_weight cannot be applied: {len(class_weight)} weights for "
                             f"{len(class_names)} classes, on the decode loss of {config_path} ({type(loss).__name__})")
        loss.class_weight = [float(w) for w in class_weight]
        # mmseg's cross_entropy with class weights divides by the weights of the non-ignored labels already, and its
        # avg_non_ignore branch then fails (IndexError: label_weights is 1-D; open-mmlab/mmsegmentation#3492, #3412):
        # off, the loss is the same weighted mean over non-ignored pixels (torch's F.cross_entropy with weight=)
        loss.avg_non_ignore = False

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
