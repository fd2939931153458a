"""Time one epoch of the training sets' data loading alone (no model), read from disk or kept in memory
(``bas.cache_images`` / ``irn.cache_images``), in the demo's augmentations:

    PYTHONPATH=. python bench/bench_data_loading.py --results results/demo [--repeats 3]

Reads ``<results>/data/VOC2012``, ``data/labels/<train_split>.json`` and, when it exists, ``ir_labels/index.json``
(a finished demo run). Prints one markdown row per dataset and mode: the epoch's seconds over the repeats (disk and
memory alternate) and, kept in memory, the one-off decoding before the first epoch.
"""
import argparse
import sys
import time
from functools import partial
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bas_seed.data import ClassificationDataset, bas_augment, load_training_labels  # noqa: E402
from irn.data import IRLabelDataset  # noqa: E402
from wsss_common.devices import describe_machine  # noqa: E402
from wsss_common.shards import load_index  # noqa: E402


def epoch_seconds(dataset) -> float:
    t = time.perf_counter()
    for n in range(len(dataset)):
        dataset[n]
    return time.perf_counter() - t


def time_modes(build, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """mode -> [(seconds to build the dataset, seconds of one epoch)] per repeat; disk and memory alternate."""
    out = {"disk": [], "memory": []}
    for _ in range(repeats):
        for mode in out:
            t = time.perf_counter()
            dataset = build(mode == "memory")
            out[mode].append((time.perf_counter() - t, epoch_seconds(dataset)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results/demo", help="a finished run's results/<experiment>")
    p.add_argument("--configfile", default=str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"))
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    cfg = yaml.safe_load(Path(a.configfile).read_text())
    results = Path(a.results)
    root = results / "data" / "VOC2012"
    bas, irn = cfg["bas"], cfg["irn"]
    ids, labels, num_fg = load_training_labels(results / "data" / "labels" / f"{cfg['data']['train_split']}.json",
                                               require_label=True)
    augment = partial(bas_augment, resize=bas["resize"], crop=bas["crop"], resize_mode=bas["resize_mode"])
    rows = {"BAS": time_modes(lambda keep: ClassificationDataset(root, ids, labels, num_fg, augment, 0,
                                                                 cache_images=keep), a.repeats)}
    ir_index = results / "ir_labels" / "index.json"
    if ir_index.is_file():
        workdir = results.resolve().parents[1]  # the index's paths are relative to the run's working directory
        paths = {i: str(workdir / f) for i, f in load_index(ir_index).items()}
        rows["IRN"] = time_modes(lambda keep: IRLabelDataset(root, paths, crop=irn["crop_size"],
                                                             scale_range=irn["scale_range"], seed=0,
                                                             cache_images=keep), a.repeats)
    print(f"machine: {describe_machine(include_gpu=False)}; {len(ids)} images; "
          f"command: `python bench/bench_data_loading.py --results {a.results} --repeats {a.repeats}`\n")
    print("| dataset | mode | one epoch (s) | decoding before epoch 1 (s) |\n|---|---|---|---|")
    for name, modes in rows.items():
        for mode, runs in modes.items():
            epochs = ", ".join(f"{e:.2f}" for _, e in runs)
            builds = ", ".join(f"{b:.2f}" for b, _ in runs) if mode == "memory" else "-"
            print(f"| {name} | {mode} | {epochs} | {builds} |")
    return rows


if __name__ == "__main__":
    main()
