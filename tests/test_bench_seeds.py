"""bench/bench_seeds.py's summary over training seeds, on hand-made rows."""
import importlib.util
from argparse import Namespace
from pathlib import Path

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
    assert "| BAS | 52.00 ± 2.83 | 51.00 ± 2.83 | 82.00 ± 2.83 | 70.00 ± 0.00 | 87.00 ± 2.83 | 0.30 / 0.30 |" in text
    assert "| CAM | 42.00 ± 2.83 | 41.00 ± 2.83 | 55.00 ± 7.07 |" in text
    assert "--seeds 0 1 --set data.synthetic.family_size=2" in text
    assert "2.50-2.50x" in text          # (export + search) / export from the timers
