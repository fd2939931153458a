# Config validation, paths and input functions. Rule files contain only rules.
import json
import re
import sys
from pathlib import Path

from wsss_common.config import initial_weights, pretrained_weights_path, pretraining_synthetic, validate_config

# Fills schema defaults in place; an unknown key, a wrong type or a missing value fails here, before any job starts,
# with a message naming the key.
validate_config(config, Path(workflow.basedir) / "schemas")

EXP = config["experiment"]
PRETRAINING = config["pretraining"]["enabled"]
# the thresholds of each IRN step, resolved by the irn_thresholds rule (numbers, or auto: irn/thresholds.py)
IRN_THRESHOLDS_OF = {"ir_labels": ("fg_threshold", "bg_threshold"), "walk": ("sem_seg_bg_threshold",)}
PY = sys.executable  # the interpreter running Snakemake (the project's environment)


wildcard_constraints:
    experiment=re.escape(EXP),
    shard=r"\d+",
    split=r"[A-Za-z0-9_]+",


# config keys whose local file or folder is absent. Only a dry run (-n) gets this far with one: it warns, plans the
# DAG without that input, and shows what a real run would do; a real run stops when the workflow loads.
ABSENT = {}
# -n: Snakemake knows the executor only after the Snakefile is read, its output settings already
DRY_RUN = bool(getattr(workflow.output_settings, "dryrun", False)) or workflow.dryrun


def local_path_missing(key, message):
    """A configured local file or folder is not there: an error naming the key, or in a dry run a warning."""
    if not DRY_RUN:
        raise ValueError(f"config key {key}: {message}")
    ABSENT[key] = message
    print(f"warning (dry run): config key {key}: {message}; a real run stops here", file=sys.stderr)


def check_dataset_root():
    root = config["data"]["root"]
    if root is None:
        return
    p = Path(root)
    missing = [str(p / sub) for sub in ("JPEGImages", "ImageSets/Segmentation") if not (p / sub).is_dir()]
    if missing:
        local_path_missing("data.root", f"{root} is not a VOC2012 folder (missing {', '.join(missing)})")


check_dataset_root()


def check_pretraining():
    """The pretraining makes a stand-in for ImageNet from a generated set: not beside a real file, not for real VOC."""
    if not PRETRAINING:
        return
    if config["imagenet_weights"] is not None:
        raise ValueError(
            "config keys pretraining.enabled and imagenet_weights exclude each other: the models start from the "
            "ImageNet file or from the workflow's pretrained stand-in, not both"
        )
    if config["data"]["root"] is not None:
        raise ValueError(
            "config key pretraining.enabled is true but data.root is a real dataset: the pretraining is the "
            "generated set's stand-in for ImageNet; on a dataset of your own give imagenet_weights or set "
            "pretraining.enabled: false (random init)"
        )
    pretraining_synthetic(config)  # an unknown key, a bad value or the main set's seed fails here


check_pretraining()


# torchvision's file names of the ImageNet ResNet weights the paper did not use (IMAGENET1K_V2: a newer recipe, ~80%
# top-1 for ResNet-50 against V1's 76%); the BAS/IRN numbers come from V1 (resnet50-19c8e357.pth / -0676ba61.pth).
TORCHVISION_V2_HASHES = ("11ad3fa6", "cd907fc2", "f82ba261")


def check_local_files():
    """Every local file the config names must exist when the workflow loads (the error names the key), and a
    setting that would silently train on garbage is refused here, before any job starts."""
    files = {
        "imagenet_weights": config["imagenet_weights"],
        "segment.init.checkpoint": config["segment"]["init"]["checkpoint"],
    }
    for key, path in files.items():
        if path is not None and not Path(path).is_file():
            local_path_missing(key, f"file not found: {path} (nothing is downloaded: put the file there)")
    weights = initial_weights(config)
    if weights is not None and any(h in Path(weights).name for h in TORCHVISION_V2_HASHES):
        print(
            f"warning: config key imagenet_weights: {weights} looks like torchvision's IMAGENET1K_V2 weights; the paper "
            "and the released code use V1 (resnet50-19c8e357.pth), so numbers will not be comparable",
            file=sys.stderr,
        )
    irn = config["irn"]
    if irn["freeze_backbone"] and weights is None and not irn["init_from_bas"]:
        raise ValueError(
            "config key irn.freeze_backbone is true but there are no backbone weights: neither imagenet_weights nor "
            "irn.init_from_bas is set, so IRN would train its heads on a frozen random ResNet. Give imagenet_weights, "
            "set irn.init_from_bas: true, or irn.freeze_backbone: false"
        )
    if weights is not None and not irn["init_from_bas"] and irn["backbone_depth"] != config["bas"]["depth"]:
        raise ValueError(
            f"config keys bas.depth ({config['bas']['depth']}) and irn.backbone_depth ({irn['backbone_depth']}) differ, "
            f"but both start from the one file imagenet_weights ({weights})"
        )
    check_segmenter_init()
    auto = [f"irn.{k}" for keys in IRN_THRESHOLDS_OF.values() for k in keys if config["irn"][k] == "auto"]
    if auto and not config["seeds"]["threshold_search"]["enabled"]:
        raise ValueError(
            f"config keys {', '.join(auto)} are auto, which needs the image-specific thresholds of the seeds: "
            "set seeds.threshold_search.enabled: true (or give numbers)"
        )


def check_segmenter_init():
    """A frozen-BN segmenter (the reference's) from scratch never learns: refuse segment.init.checkpoint null then."""
    seg = config["segment"]
    if seg["init"]["from_bas"] and seg["init"]["checkpoint"] is not None:
        raise ValueError(
            "config keys segment.init.from_bas and segment.init.checkpoint exclude each other: the backbone starts "
            "from the BAS network or from the checkpoint, not both"
        )
    if seg["init"]["from_bas"] and seg["backbone_depth"] != config["bas"]["depth"]:
        raise ValueError(
            f"config key segment.init.from_bas is true but segment.backbone_depth ({seg['backbone_depth']}) is not "
            f"bas.depth ({config['bas']['depth']})"
        )
    if seg["init"]["checkpoint"] is not None or seg["init"]["from_bas"]:
        return
    from mmengine.config import Config

    model_config = Path(workflow.basedir).parent / seg["model_config"]
    if not model_config.is_file():
        raise ValueError(f"config key segment.model_config: file not found: {model_config}")
    backbone = Config.fromfile(str(model_config), import_custom_modules=False).model.backbone
    if backbone.get("norm_eval") or not backbone.get("norm_cfg", {}).get("requires_grad", True):
        raise ValueError(
            f"config key segment.init.checkpoint is null (from scratch) but segment.model_config "
            f"({seg['model_config']}) freezes BN, whose statistics and affine then stay at their initial values: "
            "give the init checkpoint, or use a trainable-BN model config (configs/segment/deeplabv2_scratch.py)"
        )


check_local_files()


def imagenet_input(wildcards=None):
    """The ImageNet weights file (or the pretraining's stand-in, a rule output) as an input of the rules that start
    from it: a replaced file reruns them."""
    if PRETRAINING:
        return [pretrained_weights_path(config)]
    return [config["imagenet_weights"]] if config["imagenet_weights"] and "imagenet_weights" not in ABSENT else []


def segment_init_input():
    """The segmenter's init checkpoint as an input (a replaced file retrains it and only what follows)."""
    path = config["segment"]["init"]["checkpoint"]
    return [path] if path and "segment.init.checkpoint" not in ABSENT else []


def imagenet_option(wildcards, input):
    return f" --imagenet-weights {input.weights}" if input.weights else ""


def use_synthetic():
    return config["data"]["root"] is None


def voc_root(wildcards=None):
    """The VOC2012 folder every stage reads: the real one, or the synthetic set this workflow generates."""
    if use_synthetic():
        return f"results/{EXP}/data/VOC2012"
    return config["data"]["root"]


def voc_input(wildcards=None):
    """Input-side dataset dependency: the generated folder (a rule output) or the user's folder (never rebuilt)."""
    if use_synthetic():
        return f"results/{EXP}/data/VOC2012"
    return [] if "data.root" in ABSENT else ancient(config["data"]["root"])


def as_json(obj):
    """A compact JSON string: how a config section reaches a CLI as one params value (tracked for reruns)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


CLASS_NAMES = as_json(config["data"]["class_names"])


def gpus_for(section):
    """GPUs a stage's training rule asks for: 0 on a CPU-only run, else the section's ``gpus`` (default 1)."""
    if config["device"] == "cpu":
        return 0
    return int(config[section].get("gpus", 1))


def inference_gpus():
    """GPUs a sharded inference job asks for: one, unless the run is CPU-only (each shard gets its own slot)."""
    return 0 if config["device"] == "cpu" else 1


# The bas keys the CAM baseline's training reads besides its own sub-section `cam`: a BAS-only change (lambda, alpha,
# the generator's lr, ...) then does not retrain the CAM, and a CAM recipe change does not retrain BAS.
CAM_SHARED_KEYS = (
    "depth",
    "max_images",
    "ddp_max_step_quirk",
    "amp",
    "channels_last",
    "num_workers",
    "cache_images",
    "gpus",
)


def seed_net_settings(method):
    """The part of section `bas` that the training of ``method`` (bas or cam) reads."""
    bas = config["bas"]
    if method == "cam":
        return {"method": "cam", "cam": bas["cam"], **{k: bas[k] for k in CAM_SHARED_KEYS}}
    return {k: v for k, v in bas.items() if k != "cam"}


def torchrun_launch(wildcards, resources):
    """One process, or torchrun with one DDP process per GPU the job was given (local slot or SLURM allocation)."""
    if int(resources.gpu) > 1:
        return f"{PY} -m torch.distributed.run --standalone --nproc-per-node={resources.gpu} -m"
    return f"{PY} -m"


def shard_range(n):
    return list(range(int(n)))


def final_outputs():
    return [
        f"results/{EXP}/metrics/seed_miou.json",
        f"results/{EXP}/metrics/mask_miou.json",
        f"results/{EXP}/metrics/val_miou.json",
        f"results/{EXP}/report.md",
    ]
