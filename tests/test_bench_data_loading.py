"""bench/bench_data_loading.py on a tiny finished-run layout: one row per dataset and mode, the IRN rows from the IR
label index, and the memory mode's one-off decoding reported."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from wsss_common.io import save_label_png
from wsss_common.shards import merge_shard_dirs, write_index
from wsss_common.voc import load_image, load_label_cache

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_loading_prints_both_modes_of_both_datasets(tiny_voc, tmp_path):
    results = tmp_path / "results" / "demo"
    shutil.copytree(tiny_voc["root"], results / "data" / "VOC2012")
    (results / "data" / "labels").mkdir(parents=True)
    shutil.copy(tiny_voc["labels"], results / "data" / "labels" / "train_aug.json")
    ids = sorted(load_label_cache(tiny_voc["labels"]))
    shard = results / "ir_labels" / "shard_0"
    shard.mkdir(parents=True)
    for i in ids:
        save_label_png(shard / f"{i}.png", np.zeros(load_image(tiny_voc["root"], i).shape[:2], np.uint8))
    index = merge_shard_dirs([shard], ".png", ids)
    # as the workflow writes them: paths relative to the run's working directory, here not the bench's cwd
    index["items"] = {i: str(Path(f).relative_to(tmp_path)) for i, f in index["items"].items()}
    write_index(results / "ir_labels" / "index.json", index)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_data_loading.py"), "--results", str(results),
                          "--repeats", "2"], capture_output=True, text=True, cwd=elsewhere,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| BAS") or line.startswith("| IRN")]
    assert [r.split("|")[1:3] for r in rows] == [[" BAS ", " disk "], [" BAS ", " memory "], [" IRN ", " disk "],
                                                 [" IRN ", " memory "]]
    assert all(len(r.split("|")[3].split(",")) == 2 for r in rows)
    assert rows[0].split("|")[4].strip() == "-" and rows[1].split("|")[4].strip() != "-"
