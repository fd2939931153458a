"""irn.thresholds: `auto` IRN thresholds from the seeds' image-specific BAS thresholds (no pixel label), the numbers
passed through, the CLI's file read back by the IRN steps, and the errors."""
import json

import numpy as np
import pytest

from irn.thresholds import image_thresholds, main, resolve, thresholds_record, with_thresholds
from wsss_common.config import ConfigError, load_section
from wsss_common.io import save_npz_atomic
from wsss_common.shards import merge_shard_dirs, write_index

AUTO = {"fg_threshold": "auto", "bg_threshold": "auto", "sem_seg_bg_threshold": "auto"}


def _seeds(tmp_path, thresholds):
    """A seed index whose files store the given per-image thresholds (NaN = not searched)."""
    for i, t in enumerate(thresholds):
        save_npz_atomic(tmp_path / "seeds" / f"im{i}.npz", threshold=np.float32(t), keys=np.array([1]))
    index = merge_shard_dirs([tmp_path / "seeds"], ".npz")
    write_index(tmp_path / "seeds" / "index.json", index)
    return tmp_path / "seeds" / "index.json", list(index["items"].values())


def test_auto_scales_the_bas_reference_values_by_the_median_image_threshold():
    settings = load_section("irn", AUTO)
    # BAS-Extension: seed threshold 0.30 -> fg 0.30, bg 0.17, walk 0.22; a median image threshold of 0.6 doubles them
    assert resolve(settings, 0.6) == pytest.approx({"fg_threshold": 0.6, "bg_threshold": 0.34,
                                                    "sem_seg_bg_threshold": 0.44}, abs=1e-6)
    mixed = load_section("irn", {"fg_threshold": 0.35, "bg_threshold": "auto", "sem_seg_bg_threshold": 0.25,
                                 "auto_reference": {"seed_threshold": 0.2, "bg_threshold": 0.1}})
    assert resolve(mixed, 0.5) == pytest.approx({"fg_threshold": 0.35, "bg_threshold": 0.25,
                                                 "sem_seg_bg_threshold": 0.25})


def test_auto_needs_searched_seeds_and_keeps_bg_below_fg():
    with pytest.raises(ValueError, match="irn.fg_threshold is auto.*threshold_search"):
        resolve(load_section("irn", AUTO), None)
    with pytest.raises(ValueError, match="bg_threshold .* is above irn.fg_threshold"):
        resolve(load_section("irn", {"fg_threshold": 0.2, "bg_threshold": "auto"}), 0.6)  # bg 0.34 > 0.2


def test_schema_takes_numbers_or_auto_only():
    assert load_section("irn", {"fg_threshold": "auto"})["fg_threshold"] == "auto"
    with pytest.raises(ConfigError, match="irn.fg_threshold"):
        load_section("irn", {"fg_threshold": "median"})


def test_cli_writes_the_median_of_the_searched_seeds_and_the_steps_read_it(tmp_path):
    index, paths = _seeds(tmp_path, [0.2, 0.5, float("nan"), 0.8, 0.4])
    assert sorted(image_thresholds(paths)) == pytest.approx([0.2, 0.4, 0.5, 0.8])
    out = tmp_path / "thr.json"
    main(["--seeds", str(index), "--settings", json.dumps(AUTO), "--keys", "fg_threshold,bg_threshold",
          "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["image_threshold_median"] == pytest.approx(0.45) and record["n_images"] == 4
    assert record["fg_threshold"] == pytest.approx(0.45) and record["bg_threshold"] == pytest.approx(0.255)
    assert "sem_seg_bg_threshold" not in record and record["auto"] == ["fg_threshold", "bg_threshold"]
    # what make_ir_labels does with it: the auto values replaced, other keys untouched
    settings = with_thresholds(load_section("irn", AUTO), ("fg_threshold", "bg_threshold"), out)
    assert settings["fg_threshold"] == pytest.approx(0.45) and settings["crf"]["iterations"] == 10
    # the walk's file does not hold the CRF pair: a step reading the wrong file is refused
    with pytest.raises(ValueError, match="irn.sem_seg_bg_threshold are auto"):
        with_thresholds(load_section("irn", AUTO), ("sem_seg_bg_threshold",), out)


def test_numbers_need_no_seeds_and_auto_needs_the_file():
    record = thresholds_record(load_section("irn", {}), ["/nonexistent.npz"], ("sem_seg_bg_threshold",))
    assert record["sem_seg_bg_threshold"] == 0.22 and record["n_images"] == 0 and record["auto"] == []
    with pytest.raises(ValueError, match="irn.fg_threshold, irn.bg_threshold are auto: give --thresholds"):
        with_thresholds(load_section("irn", AUTO), ("fg_threshold", "bg_threshold"))
    assert with_thresholds(load_section("irn", {}), ("fg_threshold",))["fg_threshold"] == 0.30


def test_unsearched_seeds_only_give_a_clear_error(tmp_path):
    index, _ = _seeds(tmp_path, [float("nan")] * 3)
    with pytest.raises(ValueError, match="no seed has an image-specific threshold"):
        main(["--seeds", str(index), "--settings", json.dumps(AUTO), "--keys", "fg_threshold",
              "--out", str(tmp_path / "t.json")])
    assert not (tmp_path / "t.json").exists()
