"""bench/bench_scaling.py's pure parts: the scaled config, the per-image ratio and the two tables."""
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_scaling", ROOT / "bench" / "bench_scaling.py")
scaling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scaling)


def test_scaled_config_multiplies_the_image_counts_only():
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    x4 = scaling.scaled_config(demo, 4)
    for key in ("n_train", "n_train_seg", "n_val"):
        assert x4["data"]["synthetic"][key] == 4 * demo["data"]["synthetic"][key]
    rest = dict(x4, data=dict(x4["data"], synthetic=None))
    assert rest == dict(demo, data=dict(demo["data"], synthetic=None))      # nothing else changed
    assert demo["data"]["synthetic"]["n_train"] == 1000                     # the input is not modified
    with pytest.raises(SystemExit, match="synthetic"):
        scaling.scaled_config(dict(demo, data=dict(demo["data"], root="/data/VOC2012")), 2)


def test_per_image_ratio_is_one_for_linear_growth():
    assert scaling.per_image_ratio(400.0, 4, 100.0) == 1.0
    assert scaling.per_image_ratio(200.0, 4, 100.0) == 0.5     # half of the cost does not grow
    assert scaling.per_image_ratio(10.0, 2, 0.0) != scaling.per_image_ratio(10.0, 2, 0.0)  # nan: no base time


def test_tables_from_hand_made_runs():
    runs = [{"factor": 1, "wall": 100.0, "rules": {"train_bas": 40.0, "train_segmenter": 30.0, "merge": 2.0,
                                                    "tiny": 0.2}},
            {"factor": 2, "wall": 170.0, "rules": {"train_bas": 80.0, "train_segmenter": 30.0, "merge": 3.0,
                                                    "tiny": 0.3}}]
    table = scaling.scaling_table(runs).splitlines()
    assert table[2] == "| **whole DAG (wall)** | 100 | 170 | 0.85 |"
    assert table[3] == "| train_bas | 40 | 80 | 1.00 |"
    assert table[4] == "| train_segmenter | 30 | 30 | 0.50 |"        # fixed iterations: no growth
    assert table[5] == "| merge | 2 | 3 | – |"                       # whole-second stamps: too coarse for a ratio
    assert not any("tiny" in line for line in table)                 # under a second at every size
    rows = [{"stage": "seed export", "rule": "export_seeds",
             1: {"images": 100, "longest": 50.0, "jobs": [50.0], "wall": 55.0},
             2: {"images": 100, "longest": 27.0, "jobs": [27.0, 26.0], "wall": 31.0}}]
    line = scaling.shards_table(rows).splitlines()[2]
    assert line == "| seed export (`export_seeds`) | 100 | 50.0 | 2.00 | 27.0 (27.0 / 26.0) | 3.70 | 1.85x |"


def test_factors_are_checked():
    with pytest.raises(SystemExit):
        scaling.parse_args(["--workdir", "w", "--factors", "2", "3"])   # 3 is not a multiple of 2
    with pytest.raises(SystemExit):
        scaling.parse_args(["--workdir", "w", "--factors", "1", "2", "--shards-at", "4"])


def test_render_redoes_the_tables_from_the_saved_measurements(tmp_path, capsys):
    saved = {"header": "Scaling (test)", "runs": [{"factor": 1, "wall": 10.0, "rules": {"a": 6.0}},
                                                  {"factor": 2, "wall": 20.0, "rules": {"a": 12.0}}],
             "shards": [{"stage": "seed export", "rule": "export_seeds",
                         "1": {"images": 10, "longest": 10.0, "jobs": [10.0], "wall": 11.0},
                         "2": {"images": 10, "longest": 5.0, "jobs": [5.0, 5.0], "wall": 6.0}}]}
    (tmp_path / "scaling.json").write_text(__import__("json").dumps(saved))
    assert scaling.main(["--workdir", str(tmp_path), "--render", "--factors", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "| a | 6 | 12 | 1.00 |" in out and "| 2.00x |" in out and out.startswith("Scaling (test)")


def test_quality_reads_the_metrics_and_t_hat_of_a_finished_run(tmp_path):
    import json

    (tmp_path / "metrics").mkdir()
    (tmp_path / "irn").mkdir()
    for name, miou in (("seed_miou", 50.0), ("mask_miou", 60.0), ("val_miou", 55.5)):
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"miou": miou, "best_threshold": 0.59}))
    (tmp_path / "irn" / "thresholds_walk.json").write_text(json.dumps({"image_threshold_median": 0.5}))
    q = scaling.quality(tmp_path)
    assert q == {"seed": 50.0, "mask": 60.0, "val": 55.5, "gt_best_threshold": 0.59, "t_hat": 0.5}
    line = scaling.quality_table([{"factor": 2, "images": 2000, "quality": q}]).splitlines()[2]
    assert line == "| 2000 (x2) | 50.00 | 60.00 | 55.50 | 0.50 | 0.59 |"
