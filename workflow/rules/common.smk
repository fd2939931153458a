# Config validation, paths and input functions. Rule files contain only rules.
import json
import re
import sys
from pathlib import Path

from wsss_common.config import validate_config

# Fills schema defaults in place; an unknown key, a wrong type or a missing value fails here, before any job starts,
# with a message naming the key.
validate_config(config, Path(workflow.basedir) / "schemas")

EXP = config["experiment"]
PY = sys.executable  # the interpreter running Snakemake (the project's environment)


wildcard_constraints:
    experiment=re.escape(EXP),
    shard=r"\d+",
    split=r"[A-Za-z0-9_]+",


def check_dataset_root():
    root = config["data"]["root"]
    if root is None:
        return
    p = Path(root)
    missing = [
        str(p / sub)
        for sub in ("JPEGImages", "ImageSets/Segmentation")
        if not (p / sub).is_dir()
    ]
    if missing:
        raise ValueError(
            f"config key data.root: {root} is not a VOC2012 folder (missing {', '.join(missing)})"
        )


check_dataset_root()


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
    return ancient(config["data"]["root"])


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


def shard_range(n):
    return list(range(int(n)))


def final_outputs():
    return [
        f"results/{EXP}/metrics/seed_miou.json",
        f"results/{EXP}/metrics/mask_miou.json",
        f"results/{EXP}/metrics/val_miou.json",
        f"results/{EXP}/report.md",
    ]
