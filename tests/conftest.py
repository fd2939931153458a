import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY_CLASSES = ["background", "ellipse", "rectangle", "triangle", "star", "cross"]
TINY_SETTINGS = {"seed": 3, "n_train": 16, "n_train_seg": 8, "n_val": 6, "min_side": 40, "max_side": 64,
                 "max_objects": 3}


@pytest.fixture(scope="session")
def tiny_voc(tmp_path_factory):
    """A tiny synthetic VOC2012 folder (16 train_aug / 8 train / 6 val images, 40-64 px) and its label caches."""
    from wsss_common.synthetic import generate
    from wsss_common.voc import build_label_cache, save_label_cache

    base = tmp_path_factory.mktemp("tiny_voc")
    root = generate(base / "VOC2012", TINY_SETTINGS, TINY_CLASSES, workers=1, progress=False)
    labels = {}
    for split in ("train_aug", "train", "val"):
        labels[split] = base / "labels" / f"{split}.json"
        save_label_cache(labels[split], build_label_cache(root, split, TINY_CLASSES))
    return {"root": root, "class_names": list(TINY_CLASSES), "labels": labels["train_aug"],
            "label_files": labels}


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run on 2 shared cores: one intra-op thread keeps them predictable."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


def planned_rules(output: str) -> set[str]:
    """Rule names of the jobs a dry run would execute (from the 'Job stats' table)."""
    rules, in_stats = set(), False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_stats = True
            continue
        if in_stats:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
                rules.add(parts[0])
            elif parts and parts[0] == "total":
                break
    return rules


def epochs_of(dataset, epochs=(0, 1)) -> list:
    """Every sample of a training set (with ``set_epoch``) in each of ``epochs``, in index order."""
    out = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        out += [dataset[n] for n in range(len(dataset))]
    return out
