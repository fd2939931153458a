"""Time the generation of the demo synthetic dataset (goal: < 1 minute on 2 cores) and summarise what it holds.

    python bench/bench_synthetic.py [--workers 2]
Prints a markdown block for bench/RESULTS.md.
"""
import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wsss_common.synthetic import generate  # noqa: E402
from wsss_common.voc import build_label_cache, load_mask, read_split_ids  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text())
    names, settings = cfg["data"]["class_names"], cfg["data"]["synthetic"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = generate(Path(tmp) / "VOC2012", settings, names, workers=a.workers, progress=False)
        seconds = time.perf_counter() - t0
        labels = build_label_cache(root, "train_aug", names)["labels"]
        n_labels = np.array([len(v) for v in labels.values()])
        fg_frac = np.mean([np.mean((m > 0) & (m < 255)) for m in (load_mask(root, i) for i in read_split_ids(root, "train"))])
        per_class = {n: sum(c in v for v in labels.values()) for c, n in enumerate(names) if c}
    print(f"### Synthetic demo dataset\n\nmachine: {platform.machine()}, {os.cpu_count()} cores; "
          f"command: `python bench/bench_synthetic.py --workers {a.workers}`\n")
    print(f"- generated {settings['n_train']} train_aug + {settings['n_val']} val images in {seconds:.1f} s")
    print(f"- classes per image: mean {n_labels.mean():.2f}, max {n_labels.max()}; "
          f"foreground fraction of train pixels: {fg_frac:.2%}")
    print(f"- images per class (train_aug): {per_class}")


if __name__ == "__main__":
    main()
