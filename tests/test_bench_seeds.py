"""bench/bench_seeds.py's summary over training seeds, on hand-made rows."""
import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_seeds", ROOT / "bench" / "bench_seeds.py")
bench_seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_seeds)


def test_mean_sd_skips_missing_values_and_uses_the_sample_sd():
    assert bench_seeds.mean_sd([1.0, 3.0]) == "2.00 ± 1.41"
    assert bench_seeds.mean_sd([1.0, None, 3.0]) == "2.00 ± 1.41"
    assert bench_seeds.mean_sd([4.0]) == "4.00"
    assert bench_seeds.mean_sd([None]) == "n/a"


def _row(key, miou, recall):
    return {"variant": key.upper(), "key": key, "best_global_miou": miou, "image_specific_miou": miou - 1,
            "recall": recall, "precision": 70.0, "fg_recall": recall + 5, "best_threshold": 0.3, "n_images": 10,
            "map_seconds": 2.0, "search_seconds": 3.0}


def test_report_gives_one_row_per_variant_over_the_seeds():
    config = bench_seeds.load_config(ROOT / "configs" / "test.yaml")
    runs = {0: ([_row("bas", 50.0, 80.0), _row("cam", 40.0, 50.0)], {"train": 1.0}),
            1: ([_row("bas", 54.0, 84.0), _row("cam", 44.0, 60.0)], {"train": 2.0})}
    args = Namespace(configfile="configs/test.yaml", set=["data.synthetic.family_size=2"], cores=2, threads=1)
    text = bench_seeds.report(args, config, runs)
    assert "| BAS | 52.00 ± 2.83 | 51.00 ± 2.83 | 82.00 ± 2.83 | 70.00 ± 0.00 | 87.00 ± 2.83 | n/a | 0.30 / 0.30 |" \
        in text
    assert "| CAM | 42.00 ± 2.83 | 41.00 ± 2.83 | 55.00 ± 7.07 |" in text
    assert "--seeds 0 1 --set data.synthetic.family_size=2" in text
    assert "2.50-2.50x" in text          # (export + search) / export from the timers


def _point(recall, precision):
    return {"recall": recall, "precision": precision, "fg_recall": recall, "fg_precision": precision}


def test_recall_at_precision_is_the_best_recall_that_spills_no_more():
    # a CAM-like curve: lowering the threshold buys recall with precision
    curve = {"0.1": _point(80.0, 50.0), "0.2": _point(70.0, 62.0), "0.3": _point(55.0, 70.0),
             "0.9": _point(0.0, None)}
    assert bench_seeds.recall_at_precision(curve, 60.0) == 70.0     # 0.2 is the lowest threshold with >= 60
    assert bench_seeds.recall_at_precision(curve, 62.0) == 70.0     # "at least": equal precision counts
    assert bench_seeds.recall_at_precision(curve, 65.0) == 55.0
    assert bench_seeds.recall_at_precision(curve, 75.0) is None     # never that precise
    assert bench_seeds.recall_at_precision(None, 60.0) is None
    assert bench_seeds.recall_at_precision(curve, None) is None


def test_every_row_gets_its_recall_at_plain_bas_precision():
    rows = [{"key": "bas_none", "precision": 64.0, "curve": {"0.4": _point(71.0, 64.0), "0.3": _point(75.0, 60.0)}},
            {"key": "cam_none", "precision": 58.0, "curve": {"0.2": _point(72.0, 58.0), "0.3": _point(61.0, 65.0)}}]
    bench_seeds.add_recall_at_bas_precision(rows)
    assert rows[0]["recall_at_bas_precision"] == 71.0
    assert rows[1]["recall_at_bas_precision"] == 61.0   # the CAM's 72 costs precision 58 < 64
    alone = [{"key": "cam_none", "precision": 58.0, "curve": {"0.2": _point(72.0, 58.0)}}]
    bench_seeds.add_recall_at_bas_precision(alone)
    assert alone[0]["recall_at_bas_precision"] is None  # no BAS row to compare with


def test_baselines_start_from_the_configured_backbone_weights():
    """The lambda = 0 and CAM baselines start where the workflow's BAS model starts (voc12: the ImageNet file);
    before session 14 they always started from random init, so voc12's Tables 6 and 9 compared unequal inits."""
    args = (Path("VOC2012"), Path("train_aug.json"), {"method": "bas"}, "cam", Path("cam.pt"), Path("log.jsonl"),
            "cpu", "2", "0")
    with_weights = bench_seeds.baseline_train_command(*args, "pretrained/resnet50-19c8e357.pth")
    at = with_weights.index("--imagenet-weights")
    assert with_weights[at + 1] == "pretrained/resnet50-19c8e357.pth"
    assert with_weights[with_weights.index("--method") + 1] == "cam"
    assert "--imagenet-weights" not in bench_seeds.baseline_train_command(*args, None)


def test_end_to_end_on_the_test_config_then_a_rerun_reuses_every_export(tmp_path):
    """A --variants probe, then the whole command on configs/test.yaml with the demo's search scope (eval_split,
    which needs --eval-labels: the breakage that went unseen in session 5), then the same command again. The whole
    command reuses the probe's exports (a model trained for another row does not redo them: session 12 lost 15 min a
    seed to that), and the rerun retrains and re-exports nothing."""
    import json
    import os
    import subprocess
    import sys

    results = tmp_path / "R.md"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_seeds.py"), "--configfile", str(ROOT / "configs" / "test.yaml"),
           "--workdir", str(tmp_path / "w"), "--seeds", "3", "--set", "seeds.threshold_search.scope=eval_split",
           "--results", str(results), "--block", "e2e"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = subprocess.run(cmd + ["--variants", "bas_none", "cam_none"], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary_path = tmp_path / "w" / "seed3" / "results" / "test" / "bench_seeds" / "summary.json"
    summary = json.loads(summary_path.read_text())
    keys = [r["key"] for r in summary["rows"]]
    assert keys == ["bas_none", "bas_average", "bas_replace", "bas_none_fusecam", "lambda0_none", "cam_none"]
    for row in summary["rows"]:
        assert row["n_images"] == 8                      # the eval split (n_train_seg), not train_aug's 24
        assert 0.0 <= row["best_global_miou"] <= 100.0
        assert row["image_specific_miou"] is not None    # every eval image got a searched threshold
        assert row["search_seconds"] > 0.0
        assert len(row["curve"]) == len(json.loads(
            (tmp_path / "w" / "seed3" / "results" / "test" / "bench_seeds" / f"{row['key']}_seed_miou.json")
            .read_text())["threshold_sweep"])
    bas = summary["rows"][0]
    if bas["precision"] is not None:                   # its own best point reaches its own precision
        assert bas["recall_at_bas_precision"] >= bas["recall"]
    assert "train lambda0" in summary["times"] and "train cam" not in summary["times"]   # the probe trained it
    assert sorted(k for k in summary["times"] if k.startswith("export ")) == [
        "export bas_average", "export bas_none_fusecam", "export bas_replace", "export lambda0_none"]
    config = (tmp_path / "w" / "seed3" / "results" / "bench_seeds_config_seed3.yaml").read_text()
    assert "seed: 3" in config and "scope: eval_split" in config
    text = results.read_text()
    assert "<!-- e2e:start -->" in text and "--seeds 3 --set seeds.threshold_search.scope=eval_split" in text
    assert text.count("| BAS, fusion replace |") == 1

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    times = json.loads(summary_path.read_text())["times"]
    assert not [k for k in times if k.startswith(("train ", "export "))], times
    assert results.read_text().count("<!-- e2e:start -->") == 1   # the block replaced, not appended again


def test_select_variants_keeps_table_order_and_rejects_unknown_keys():
    keys = [bench_seeds.variant_key(v) for v in bench_seeds.select_variants(["cam_none", "bas_none"])]
    assert keys == ["bas_none", "cam_none"]                  # table order, not the order asked
    assert len(bench_seeds.select_variants(None)) == 6
    assert [bench_seeds.variant_key(v) for v in bench_seeds.select_variants(None, class_agnostic=False)] == [
        "bas_none", "bas_none_fusecam", "lambda0_none", "cam_none"]
    with pytest.raises(SystemExit, match="bas_mean"):
        bench_seeds.select_variants(["bas_mean"])
