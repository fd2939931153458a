"""The experiment report: the pure functions of wsss_common.report_figures on tiny hand-made inputs, the report CLI
on a tiny hand-made experiment, and end to end: the tiny DAG, ``snakemake --report``, and the HTML opened in a real
headless browser (Debian's chromium) that checks the tables and images are rendered, not only present."""
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss_common import report_figures as rf
from wsss_common.io import save_label_png, save_npz_atomic, voc_palette, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ROOT / "workflow" / "report"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_pixels(path) -> np.ndarray:
    data = Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def assert_not_blank(pixels: np.ndarray, min_colours: int = 8) -> None:
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert pixels.std() > 5 and len(colours) >= min_colours, (pixels.std(), len(colours))


# ---------------------------------------------------------------------------------------------------------------
# label maps and grids

def test_colorize_gives_the_palette_of_the_label_pngs(tmp_path):
    labels = np.array([[0, 1, 2], [3, 15, 255]], np.uint8)
    rgb = rf.colorize(labels)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    # the PASCAL VOC colours: background black, aeroplane dark red, bicycle green, bird olive, person, void cream
    assert rgb[0].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert rgb[1].tolist() == [[128, 128, 0], [192, 128, 128], [224, 224, 192]]
    # exactly what a viewer shows for the label PNGs the stages write (wsss_common.io.save_label_png)
    save_label_png(tmp_path / "m.png", labels)
    with Image.open(tmp_path / "m.png") as img:
        assert np.array_equal(np.asarray(img.convert("RGB")), rgb)
    assert rf.PALETTE.reshape(-1).tolist() == voc_palette(256)


def test_seed_label_map_is_the_argmax_with_the_background_plane():
    maps = np.zeros((2, 2, 3), np.float32)
    maps[0] = [[0.9, 0.3, 0.1], [0.5, 0.5, 0.0]]
    maps[1] = [[0.2, 0.6, 0.1], [0.5, 0.4, 0.3]]
    out = rf.seed_label_map(maps, np.array([3, 5]), threshold=0.3)
    # 0.3 = t is a tie with the background (background wins); equal maps take the first key
    assert out.tolist() == [[3, 5, 0], [3, 3, 0]] and out.dtype == np.uint8
    assert rf.seed_label_map(np.zeros((0, 2, 2), np.float32), np.zeros(0, np.int64), 0.3).tolist() == [[0, 0], [0, 0]]


def test_grid_shape_placement_and_blank_cells():
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((2, 2, 3), np.uint8)
    blue[..., 2] = 255
    g = rf.grid([[red, blue, None], [blue, None, red]], pad=1, fill=0)
    assert g.shape == (2 * (4 + 1) + 1, 3 * (6 + 1) + 1, 3)
    assert g[1:5, 1:7, 0].min() == 255                       # first cell: the red tile fills it
    assert g[1 + 1:1 + 3, 8 + 2:8 + 4, 2].min() == 255       # a smaller tile is centred in its cell
    assert g[1:5, 15:21].max() == 0                          # None leaves the cell blank
    with pytest.raises(ValueError):
        rf.grid([[red], [red, red]])


def test_fit_tile_keeps_label_colours_exact():
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    tile = rf.fit_tile(rf.colorize(labels), 64)
    assert tile.shape == (64, 64, 3)
    colours = {tuple(c) for c in tile.reshape(-1, 3)}
    assert colours == {tuple(rf.PALETTE[i]) for i in (0, 1, 2, 255)}
    wide = rf.fit_tile(np.zeros((10, 40, 3), np.uint8), 40)  # letterboxed: 10x40 -> rows 15..24 of a 40x40 tile
    assert wide[:15].min() == 255 and wide[15:25].max() == 0 and wide[25:].min() == 255


def test_sample_ids_are_fixed_and_spread():
    ids = [f"2007_{i:06d}" for i in range(10)][::-1]
    assert rf.sample_ids(ids, 3) == ["2007_000000", "2007_000004", "2007_000009"]
    assert rf.sample_ids(ids, 3) == rf.sample_ids(sorted(ids), 3)
    assert rf.sample_ids(ids[:2], 6) == ["2007_000008", "2007_000009"]
    assert rf.sample_ids([], 4) == [] and rf.sample_ids(ids, 0) == []


def test_grid_figure_is_a_png_with_the_tiles(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    lab = rf.colorize(np.array([[0, 1], [2, 255]], np.uint8))
    rf.grid_figure([[img, lab], [img, lab]], ["image", "mask"], ["a", "b"], ["background", "x", "y"],
                   tmp_path / "g.png", title="t", side=48)
    px = png_pixels(tmp_path / "g.png")
    assert_not_blank(px)
    assert px.shape[0] > 2 * 48 and px.shape[1] > 2 * 48
    # the label colours reach the PNG exactly (drawn 1:1, nearest neighbour)
    colours = {tuple(c) for c in px.reshape(-1, 3)}
    assert {tuple(rf.PALETTE[i]) for i in (1, 2, 255)} <= colours
    rf.grid_figure([], ["image"], [], ["background"], tmp_path / "none.png", title="t")  # nothing to show: says so
    png_pixels(tmp_path / "none.png")


# ---------------------------------------------------------------------------------------------------------------
# plots and logs

SEED_METRICS = {
    "miou": 55.0, "split": "train", "n_images": 8, "per_class": {"background": 80.0, "ellipse": 30.0, "star": None},
    "best_threshold": 0.3, "best_threshold_on_edge": False,
    "threshold_sweep": {"0.2": 50.0, "0.3": 55.0, "0.4": 52.5},
    "fixed_threshold": 0.35, "fixed_threshold_miou": 54.0,
    "image_specific_miou": 51.5, "image_specific_threshold_mean": 0.31, "image_specific_threshold_std": 0.05,
    "variants": {
        "bas_class_specific": {"meaning": "BAS maps alone", "miou": 52.0, "best_threshold": 0.4, "on_edge": True,
                               "threshold_sweep": {"0.4": 52.0, "0.2": 47.0, "0.3": 50.0}},
        "bas_foreground": {"meaning": "after the agnostic fusion", "miou": 53.0, "best_threshold": 0.3,
                           "on_edge": False, "threshold_sweep": {"0.2": 49.0, "0.3": 53.0, "0.4": None}},
    },
}


def test_sweep_series_has_the_seed_and_each_variant():
    series = rf.sweep_series(SEED_METRICS)
    assert [s["name"] for s in series] == ["seed (what IRN gets)", "variant bas_class_specific", "variant bas_foreground"]
    assert series[1]["thresholds"] == [0.2, 0.3, 0.4] and series[1]["miou"] == [47.0, 50.0, 52.0]
    assert series[1]["best_threshold"] == 0.4 and series[1]["best_miou"] == 52.0
    assert np.isnan(series[2]["miou"][2])
    assert [s["name"] for s in rf.sweep_series({k: v for k, v in SEED_METRICS.items() if k != "variants"})] == [
        "seed (what IRN gets)"]


def test_sweep_plot_is_a_valid_png(tmp_path):
    rf.sweep_plot(rf.sweep_series(SEED_METRICS), tmp_path / "s.png", fixed_threshold=0.35, fixed_miou=54.0,
                  image_specific_miou=51.5)
    px = png_pixels(tmp_path / "s.png")
    assert px.shape[1] >= 600 and px.shape[0] >= 300
    assert_not_blank(px, min_colours=50)
    rf.sweep_plot([], tmp_path / "empty.png")  # no sweep: still a figure, saying so
    png_pixels(tmp_path / "empty.png")


def test_loss_plot_draws_each_panel_and_says_when_a_log_is_missing(tmp_path):
    rows = [{"epoch": 1, "total": 3.0, "mcls": 3.0}, {"epoch": 2, "total": 4.0, "mcls": 1.5, "bas": 0.5}]
    terms = rf.loss_terms(rows, exclude=("epoch",))
    assert terms == ["total", "mcls", "bas"]
    panels = [{"title": "BAS", "x": "epoch", "xlabel": "epoch", "rows": rows, "terms": terms},
              {"title": "CAM", "x": "epoch", "xlabel": "epoch", "rows": [], "terms": [], "missing": "no log"}]
    rf.loss_plot(panels, tmp_path / "l.png", title="losses")
    assert_not_blank(png_pixels(tmp_path / "l.png"), min_colours=30)


def test_read_jsonl(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"epoch": 1, "total": 2.5}\n\n{"epoch": 2, "total": 2.0}\n')
    assert rf.read_jsonl(tmp_path / "a.jsonl") == [{"epoch": 1, "total": 2.5}, {"epoch": 2, "total": 2.0}]
    assert rf.read_jsonl(tmp_path / "missing.jsonl") == []
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(rf.DataError, match="bad.jsonl:1"):
        rf.read_jsonl(tmp_path / "bad.jsonl")


def test_parse_irn_log_reads_the_epoch_lines():
    text = "\n".join([
        "2026-12-01 16:42:15,987 irn.train: 4 images, 2 steps/epoch x 2 epochs, crop 48",
        "irn epoch 1/2:   0%|          | 0/2 [00:00<?, ?it/s]irn epoch 1/2: 100%|##########| 2/2",
        "2026-12-01 16:42:16,068 irn.train: epoch 1: loss 1.3327, pos 0.5342, neg 0.3288, dp_fg 1.8022, dp_bg 0.0000",
        "2026-12-01 16:42:17,068 irn.train: epoch 2: loss 1.1000, pos 0.5000, neg 0.3000, dp_fg 1.5000, dp_bg 0.0100",
        "2026-12-01 16:42:18,068 irn.train: epoch 2: loss 1.0500, pos 0.4000, neg 0.3000, dp_fg 1.5000, dp_bg nan",
    ])
    rows = rf.parse_irn_log(text)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0] == {"epoch": 1, "loss": 1.3327, "pos": 0.5342, "neg": 0.3288, "dp_fg": 1.8022, "dp_bg": 0.0}
    assert rows[1]["loss"] == 1.05 and np.isnan(rows[1]["dp_bg"])      # a later line for an epoch wins
    assert rf.parse_irn_log("no epochs here\n") == []


def test_merge_resumed_runs_joins_one_training_and_drops_older_ones():
    old = [{"iter": i, "loss": 9.0} for i in (100, 200, 300, 400)]      # an older training, from scratch
    fresh = [{"iter": i, "loss": 1.0} for i in (100, 200, 300)]         # retrained from scratch, cut after 300
    resumed = [{"iter": i, "loss": 0.5} for i in (300, 400, 500)]       # resumed from iter 200 (300 logged again)
    rows = rf.merge_resumed_runs([(old, None), (fresh, None), (resumed, 200)])
    assert [(r["iter"], r["loss"]) for r in rows] == [(100, 1.0), (200, 1.0), (300, 0.5), (400, 0.5), (500, 0.5)]
    assert rf.merge_resumed_runs([(old, None), (fresh, None)]) == fresh
    assert rf.merge_resumed_runs([]) == []
    assert rf.resumed_at("2026/12/01 - mmengine - INFO - resumed epoch: 0, iter: 2\n") == 2
    assert rf.resumed_at("resume = True\n") is None


def test_read_mmengine_scalars_from_a_work_dir(tmp_path):
    def run(name, iters, log=""):
        (tmp_path / name / "vis_data").mkdir(parents=True)
        lines = [json.dumps({"lr": 0.01, "loss": float(i), "decode.loss_ce": float(i), "iter": i, "step": i})
                 for i in iters] + [json.dumps({"mIoU": 3.0, "step": 9})]  # a val row: no loss
        (tmp_path / name / "vis_data" / "scalars.json").write_text("\n".join(lines) + "\n")
        (tmp_path / name / f"{name}.log").write_text(log)

    run("20260101_000000", [1, 2, 3, 4, 5])
    run("20260102_000000", [1, 2])
    run("20260103_000000", [3, 4], log="... - mmengine - INFO - resumed epoch: 0, iter: 2\n")
    rows = rf.read_mmengine_scalars(tmp_path)
    assert [r["iter"] for r in rows] == [1, 2, 3, 4]
    assert rf.read_mmengine_scalars(tmp_path / "missing") == []


# ---------------------------------------------------------------------------------------------------------------
# tables

TSV_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_timing_table_from_hand_written_benchmark_tsvs(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "train_bas.tsv").write_text(TSV_HEADER + "120.5\t0:02:00\t2048.0\t4000\t1900\t1950\t10\t20\t180\t200.0\n")
    (bench / "export_seeds_0.tsv").write_text(TSV_HEADER + "30.0\t0:00:30\t900.0\t2000\t800\t810\t1\t2\t95\t28.0\n")
    (bench / "export_seeds_1.tsv").write_text(TSV_HEADER + "40.0\t0:00:40\t950.5\t2000\t800\t810\t1\t2\t95\tNA\n")
    # repeat("...", 2): two rows, the mean is taken
    (bench / "train_irn.tsv").write_text(TSV_HEADER + "10\t0:00:10\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t8\n"
                                         + "20\t0:00:20\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t12\n")
    (bench / "notes.txt").write_text("not a benchmark")
    records = rf.read_benchmarks(bench)
    assert {(r["rule"], r["shard"]) for r in records} == {("train_bas", None), ("export_seeds", "0"),
                                                          ("export_seeds", "1"), ("train_irn", None)}
    header, rows = rf.timing_table(records)
    assert header == ["rule", "jobs", "wall time (s)", "longest job (s)", "peak RSS (MB)", "CPU time (s)"]
    assert rows == [
        ["train_bas", "1", "120.5", "120.5", "2048", "200.0"],
        ["export_seeds", "2", "70.0", "40.0", "950", "28.0"],
        ["train_irn", "1", "15.0", "15.0", "n/a", "10.0"],
        ["total", "4", "205.5", "", "2048", "238.0"],
    ]
    page = rf.html_page("Timing", [("Per rule", "", (header, rows))])
    assert "<td>export_seeds</td>" in page and '<td class="num">950</td>' in page and 'class="total"' in page


def test_timing_table_of_an_empty_or_missing_folder_is_empty(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    for folder in (tmp_path / "benchmarks", tmp_path / "missing"):
        records = rf.read_benchmarks(folder)
        assert records == []
        header, rows = rf.timing_table(records)
        assert rows == [] and header[0] == "rule"
        assert "(none)" in rf.html_table((header, rows))


def test_benchmark_rule_column_of_extended_benchmarks_wins(tmp_path):
    (tmp_path / "x_3.tsv").write_text("s\tmax_rss\trule\twildcards\n1.5\t10\tpredict_val\tshard=3\n")
    assert rf.read_benchmark(tmp_path / "x_3.tsv") == {"rule": "predict_val", "shard": "3", "file": "x_3.tsv",
                                                       "s": 1.5, "max_rss": 10.0, "cpu_time": None}


MASK_METRICS = {"miou": 60.0, "split": "train", "n_images": 8,
                "per_class": {"background": 85.0, "ellipse": 35.0, "star": 60.0}}
VAL_METRICS = {"miou": 12.5, "split": "val", "n_images": 6, "segmenter_init": "scratch", "val_crf": True,
               "per_class": {"background": 20.0, "ellipse": None, "star": 5.0}}
ALL_METRICS = {"seed_miou": SEED_METRICS, "mask_miou": MASK_METRICS, "val_miou": VAL_METRICS}


def test_miou_and_per_class_tables():
    header, rows = rf.miou_table(ALL_METRICS)
    assert header[:4] == ["stage", "split", "images", "mIoU (%)"]
    assert [r[:4] for r in rows] == [["BAS seeds", "train", "8", "55.00"], ["IRN pseudo masks", "train", "8", "60.00"],
                                     ["DeepLabV2 segmenter", "val", "6", "12.50"]]
    assert "best global threshold 0.3" in rows[0][4] and "ground truth" in rows[0][4]
    header, rows = rf.per_class_table(ALL_METRICS)
    assert header == ["class", "BAS seeds", "IRN pseudo masks", "DeepLabV2 segmenter"]
    assert rows == [["background", "80.00", "85.00", "20.00"], ["ellipse", "30.00", "35.00", "n/a"],
                    ["star", "n/a", "60.00", "5.00"], ["mean (mIoU)", "55.00", "60.00", "12.50"]]


def test_ablation_table_has_a_row_per_variant():
    header, rows = rf.ablation_table(SEED_METRICS)
    assert header == ["seed maps", "threshold", "mIoU (%)", "meaning"]
    assert [r[0] for r in rows] == ["seed (what IRN gets)", "bas_class_specific", "bas_foreground", "seed", "seed"]
    assert rows[1][1:3] == ["best 0.4 (GT-swept), on sweep edge", "52.00"]
    assert rows[2][1:3] == ["best 0.3 (GT-swept)", "53.00"]
    assert rows[3][1:3] == ["fixed 0.35 (seeds.eval_threshold)", "54.00"]
    assert rows[4][2] == "51.50" and "0.31" in rows[4][1]
    _, rows = rf.ablation_table({"miou": 40.0, "best_threshold": 0.25})      # no variants, no other thresholds
    assert rows == [["seed (what IRN gets)", "best 0.25 (GT-swept)", "40.00", "the headline seed mIoU"]]


def test_rst_table_renders_in_docutils_without_errors():
    from docutils.core import publish_parts

    table = (["name", "value"], [["bas_class_specific_", "*1*"], ["a|b", "`x`"]])
    out = publish_parts(rf.rst_table(table, "t", widths=(2, 1)), writer="html",
                        settings_overrides={"report_level": 2, "halt_level": 2})["body"]
    for cell in ("bas_class_specific_", "*1*", "a|b", "`x`"):
        assert f"<td>{cell}</td>" in out
    out = publish_parts(rf.rst_table((["a", "b"], [])), writer="html")["body"]
    assert "(none)" in out


def test_headline_lines():
    lines = rf.headline_lines(ALL_METRICS)
    assert lines[0].startswith("BAS seeds: 55.00 mIoU on train (best global threshold 0.3, swept against the ground truth")
    assert lines[1].startswith("IRN pseudo masks: 60.00 mIoU on train") and lines[2].startswith("DeepLabV2 segmenter: 12.50")


# ---------------------------------------------------------------------------------------------------------------
# captions

def caption_files() -> list[str]:
    return re.findall(r'caption="\.\./report/([\w.]+\.rst)"', (ROOT / "workflow" / "rules" / "report.smk").read_text())


def test_every_report_output_has_a_caption_file():
    names = caption_files()
    assert len(names) == 9 and len(set(names)) == 9
    for name in names:
        assert (CAPTIONS / name).is_file(), name
    assert 'report: "report/workflow.rst"' in (ROOT / "workflow" / "Snakefile").read_text()


def test_seed_captions_name_the_ground_truth_swept_threshold():
    for name in ("seed_sweep.rst", "samples_eval_split.rst", "metrics.rst", "seed_ablation.rst"):
        text = " ".join((CAPTIONS / name).read_text().split())
        assert "best global threshold" in text or "best point of" in text, name
        assert re.search(r"(chosen|swept) against the ground(-truth| truth)", text), name
    text = " ".join((CAPTIONS / "seed_sweep.rst").read_text().split())
    assert "The reported seed mIoU is the best point of this sweep" in text and "as the BAS paper" in text


def test_captions_render_without_rst_errors():
    import jinja2
    from docutils.core import publish_parts

    class Snakemake:
        wildcards = type("W", (), {"experiment": "test"})()
        config = {"experiment": "test", "data": {"eval_split": "train", "val_split": "val"}}

    for path in sorted(CAPTIONS.glob("*.rst")):
        text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(path.read_text()).render(
            snakemake=Snakemake, files=[], categories={})
        publish_parts(text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})


def test_landing_page_includes_the_mIoU_table_of_the_run(tmp_path, monkeypatch):
    """workflow.rst as Snakemake renders it (Jinja, then docutils from the work dir), given the report's files."""
    import jinja2
    from docutils.core import publish_parts

    from wsss_common.report import summary_rst

    folder = tmp_path / "results" / "test" / "report"
    folder.mkdir(parents=True)
    (folder / "summary.rst").write_text(summary_rst("test", ALL_METRICS))
    monkeypatch.chdir(tmp_path)

    class Record:
        path = Path("results/test/report/metrics.html")

    class Snakemake:
        config = {"experiment": "test", "data": {"eval_split": "train", "val_split": "val"}}

    # the link targets Snakemake appends to the description (one per category)
    links = "\n".join(f".. _{c}: javascript:app.showCategory('{c}')" for c in ("Metrics", "Samples", "Timing", "Training"))
    source = (CAPTIONS / "workflow.rst").read_text() + "\n\n" + links + "\n"
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    text = env.from_string(source).render(snakemake=Snakemake, files=[Record()], categories={})
    body = publish_parts(text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    assert "mIoU per stage, experiment test" in body and "<td>55.00</td>" in body and "<td>12.50</td>" in body
    assert "javascript:app.showCategory('Samples')" in body
    # without the report's files (a partial run) the page is the description alone
    text = env.from_string(source).render(snakemake=Snakemake, files=[], categories={})
    body = publish_parts(text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    assert "mIoU per stage" not in body and "BAS seeds" in body


# ---------------------------------------------------------------------------------------------------------------
# the CLI on a tiny hand-made experiment (seeds, masks and predictions derived from the ground truth)

FIGURE_OPTIONS = {"summary_rst": "summary.rst", "metrics_html": "metrics.html", "ablation_html": "ablation.html",
                  "timing_html": "timing.html", "sweep_png": "sweep.png", "seed_loss_png": "loss_seed.png",
                  "irn_loss_png": "loss_irn.png", "segmenter_loss_png": "loss_seg.png",
                  "train_samples_png": "train.png", "val_samples_png": "val.png"}


@pytest.fixture
def tiny_experiment(tiny_voc, tmp_path):
    from wsss_common.voc import load_label_cache, load_mask

    root, files = tiny_voc["root"], tiny_voc["label_files"]
    index = {"seeds": {}, "masks": {}, "preds": {}}
    for image_id, keys in load_label_cache(files["train"]).items():
        gt = load_mask(root, image_id)
        maps = np.stack([(gt == k).astype(np.float32) for k in keys]) if keys else np.zeros((0, *gt.shape), np.float32)
        index["seeds"][image_id] = str(tmp_path / "seeds" / f"{image_id}.npz")
        save_npz_atomic(index["seeds"][image_id], format=np.array("wsss-seed/1"), keys=np.array(keys, np.int64),
                        cam=maps[:, ::4, ::4], high_res=maps, threshold=np.float32("nan"),
                        image_size=np.array(gt.shape, np.int64))
        index["masks"][image_id] = str(tmp_path / "masks" / f"{image_id}.png")
        save_label_png(index["masks"][image_id], np.where(gt == 255, 0, gt))
    for image_id in load_label_cache(files["val"]):
        index["preds"][image_id] = str(tmp_path / "preds" / f"{image_id}.png")
        save_label_png(index["preds"][image_id], np.zeros_like(load_mask(root, image_id)))
    for name, items in index.items():
        write_json_atomic(tmp_path / f"{name}.json", {"format": "wsss-index/1", "suffix": "", "items": items})
    per_class = {c: 50.0 for c in tiny_voc["class_names"]}
    for stem, m in ALL_METRICS.items():
        write_json_atomic(tmp_path / f"{stem}.json", {**m, "per_class": per_class})
    (tmp_path / "loss.jsonl").write_text('{"epoch": 1, "total": 2.0, "mcls": 2.0}\n{"epoch": 2, "total": 1.0, "mcls": 1.0}\n')
    return tmp_path


def report_argv(exp: Path, tiny_voc, out: Path, **replace) -> list[str]:
    opts = {"voc_root": tiny_voc["root"], "class_names": json.dumps(tiny_voc["class_names"]),
            "eval_labels": tiny_voc["label_files"]["train"], "val_labels": tiny_voc["label_files"]["val"],
            "seeds": exp / "seeds.json", "pseudo_masks": exp / "masks.json", "val_predictions": exp / "preds.json",
            "bas_loss_log": exp / "loss.jsonl", "irn_log": exp / "no_irn.log", "segment_work_dir": exp / "no_work",
            "benchmarks": exp / "no_benchmarks", **{k: out / v for k, v in FIGURE_OPTIONS.items()}, **replace}
    argv = ["--out", str(out / "report.md"), "--experiment", "tiny", "--print"]
    argv += [str(exp / f"{s}.json") for s in ALL_METRICS]
    for k, v in opts.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def test_the_pretraining_cam_gets_its_own_loss_panel(tiny_experiment, tiny_voc, tmp_path):
    """One seed-network panel per loss log given: the pretraining CAM's comes beside BAS's (and the CAM baseline's)."""
    from wsss_common.report import main

    widths = {}
    for name, extra in (("bas", {}), ("cam", {"cam_loss_log": tiny_experiment / "loss.jsonl"}),
                        ("both", {"cam_loss_log": tiny_experiment / "loss.jsonl",
                                  "pretraining_loss_log": tiny_experiment / "loss.jsonl"})):
        out = tmp_path / name
        main(report_argv(tiny_experiment, tiny_voc, out, **extra))
        widths[name] = png_pixels(out / "loss_seed.png").shape[1]
    assert widths["cam"] == pytest.approx(2 * widths["bas"], rel=0.05)
    assert widths["both"] == pytest.approx(3 * widths["bas"], rel=0.05)


def test_cli_writes_every_figure_and_table(tiny_experiment, tiny_voc, tmp_path, capsys):
    from wsss_common.report import main

    out = tmp_path / "out"
    # the IRN log, the mmengine work dir and the benchmark folder missing: figures that say so, an empty table
    main(report_argv(tiny_experiment, tiny_voc, out, cam_loss_log=tiny_experiment / "loss.jsonl"))
    printed = capsys.readouterr().out
    assert "BAS seeds: 55.00 mIoU" in printed and "DeepLabV2 segmenter: 12.50 mIoU" in printed
    assert "machine: " in printed and f"{os.cpu_count()} cores" in printed  # make demo names the machine
    assert "| seed_miou | train | 8 | 55.00 |" in (out / "report.md").read_text()
    for key, name in FIGURE_OPTIONS.items():
        if name.endswith(".png"):
            assert_not_blank(png_pixels(out / name))
    train = png_pixels(out / "train.png")
    colours = {tuple(c) for c in train.reshape(-1, 3)}
    assert {tuple(rf.PALETTE[i]) for i in (0, 255)} <= colours  # background and the void band of the GT
    assert "IRN pseudo masks" in (out / "metrics.html").read_text()
    assert "(none)" in (out / "timing.html").read_text()
    assert "bas_class_specific" in (out / "ablation.html").read_text()
    assert "mIoU per stage" in (out / "summary.rst").read_text()


def test_cli_wants_all_figure_options_or_none(tiny_experiment, tiny_voc, tmp_path):
    from wsss_common.report import main

    with pytest.raises(SystemExit):
        main(["--experiment", "x", str(tiny_experiment / "seed_miou.json"), "--sweep-png", str(tmp_path / "s.png")])
    main(["--out", str(tmp_path / "r.md"), "--experiment", "x", str(tiny_experiment / "seed_miou.json")])
    assert (tmp_path / "r.md").is_file() and not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# end to end: the tiny DAG, snakemake --report, and the report in a real headless browser

def smk(workdir, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(workdir), *args]
    p = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """The whole tiny DAG (target all), then ``snakemake --report``: the work dir and the HTML report."""
    wd = tmp_path_factory.mktemp("report_e2e")
    shutil.copytree(ROOT / "configs", wd / "configs")
    smk(wd, "all", "--cores", "2", "--configfile", "configs/test.yaml")
    smk(wd, "--report", str(wd / "report.html"), "--configfile", "configs/test.yaml")
    return wd


def embedded_json(html: str, name: str):
    m = re.search(rf'<script id="{name.replace("_", "-")}">\s*var {name} = (.*?);\s*</script>', html, re.S)
    assert m, f"no {name} in the report"
    return json.loads(m.group(1))


REPORT_FILES = {  # file -> (category, subcategory, mime type)
    "metrics.html": ("Metrics", "mIoU", "text/html"), "seed_sweep.png": ("Metrics", "Seeds", "image/png"),
    "seed_ablation.html": ("Metrics", "Seeds", "text/html"), "loss_seed_network.png": ("Training", "Other", "image/png"),
    "loss_irn.png": ("Training", "Other", "image/png"), "loss_segmenter.png": ("Training", "Other", "image/png"),
    "samples_eval_split.png": ("Samples", "Other", "image/png"), "samples_val.png": ("Samples", "Other", "image/png"),
    "timing.html": ("Timing", "Other", "text/html"),
}


def test_report_html_embeds_every_figure_with_its_caption(report_run):
    html = (report_run / "report.html").read_text()
    results = embedded_json(html, "results")
    categories = embedded_json(html, "categories")
    by_name = {Path(p).name: r for p, r in results.items()}
    assert set(by_name) == set(REPORT_FILES)
    for name, (cat, sub, mime) in REPORT_FILES.items():
        r = by_name[name]
        assert r["mime_type"] == mime and r["data_uri"].startswith(f"data:{mime}"), name  # self-contained
        assert any(Path(p).name == name for p in categories[cat][sub]), name
        assert r["caption"].strip(), f"{name} has no caption"
    assert "ground truth" in by_name["seed_sweep.png"]["caption"]
    # the figures are the files the DAG's report rule wrote, the tables carry the metrics
    seed = json.loads((report_run / "results/test/metrics/seed_miou.json").read_text())
    table = base64.b64decode(by_name["metrics.html"]["data_uri"].split("base64,", 1)[1]).decode()
    assert f"{seed['miou']:.2f}" in table and "IRN pseudo masks" in table
    png = base64.b64decode(by_name["samples_eval_split.png"]["data_uri"].split("base64,", 1)[1])
    assert png == (report_run / "results/test/report/samples_eval_split.png").read_bytes()
    # the timing table: a row per rule that wrote a benchmark: TSV (none yet is an empty table, not an error)
    timing = base64.b64decode(by_name["timing.html"]["data_uri"].split("base64,", 1)[1]).decode()
    assert "<th>peak RSS (MB)</th>" in timing
    for tsv in (report_run / "results/test/benchmarks").glob("*.tsv"):
        assert f"<td>{rf.read_benchmark(tsv)['rule']}</td>" in timing, tsv.name
    desc = embedded_json(html, "workflow_desc")
    assert "mIoU per stage, experiment test" in desc and f"{seed['miou']:.2f}" in desc
    assert "mask_miou" in (report_run / "results/test/report.md").read_text()


def ensure_chromium() -> str:
    """The chromium binary; installed with apt-get when missing (CI runs as root on Debian, with no display: the
    test installs what it needs itself). Skips, saying why, only where it cannot be installed."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        reason = "chromium is not installed and the tests do not run as root, so apt-get cannot install it"
    elif not shutil.which("apt-get"):
        reason = "chromium is not installed and there is no apt-get to install it"
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        steps = (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"])
        for cmd in steps:
            try:
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            except subprocess.TimeoutExpired:
                p = None
            if p is None or p.returncode != 0:
                reason = f"{' '.join(cmd)} failed: {(p.stdout + p.stderr)[-500:] if p else 'timed out'}"
                break
        else:
            exe = shutil.which("chromium")
            if exe:
                return exe
            reason = "apt-get installed chromium but there is no chromium on PATH"
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def chromium(exe: str, url: str, *args: str, size: str = "1400,2000") -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")  # a new empty profile every run
    try:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={size}",
             # the report is a React app that renders from data embedded in the page: let its scripts (and the
             # timers of the navigation below) run before the DOM is dumped or the screenshot taken
             "--virtual-time-budget=10000", *args, url],
            capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# Appended to a copy of the report: clicks through the report's own menu as a person would (a menu entry, the "view"
# or the "info" button of a result row), one step every 500 ms, then marks the page done (or records the error).
NAVIGATE = """<script>
window.addEventListener("load", function () {
  function mark(id, text) { var d = document.createElement("div"); d.id = id; d.textContent = text || ""; document.body.appendChild(d); }
  window.addEventListener("error", function (ev) { mark("nav-error", "js error: " + ev.message); });
  function click(selector, test, what) {
    var el = Array.from(document.querySelectorAll(selector)).find(test);
    if (!el) { throw new Error("not found: " + what); }
    el.click();
  }
  var steps = STEPS, i = 0;
  function next() {
    if (i >= steps.length) { mark("nav-done"); return; }
    var step = steps[i++];
    try {
      if (step[0] === "menu") click("nav a", function (a) { return a.textContent.trim() === step[1]; }, "menu " + step[1]);
      else click("nav tr [role=group] a:" + (step[0] === "view" ? "first-child" : "last-child"), function (a) {
        return a.closest("tr").textContent.indexOf(step[1]) >= 0; }, step[0] + " " + step[1]);
    } catch (err) { mark("nav-error", String(err)); return; }
    setTimeout(next, 500);
  }
  setTimeout(next, 500);
});
</script>"""


def open_view(exe: str, report: Path, steps: list, out: Path) -> tuple[str, np.ndarray]:
    """The report after clicking through ``steps``: its rendered DOM and a screenshot (pixels)."""
    html = report.read_text()
    end = html.rindex("</body>")
    page = out.with_suffix(".html")
    page.write_text(html[:end] + NAVIGATE.replace("STEPS", json.dumps(steps)) + html[end:])
    dom = chromium(exe, page.as_uri(), "--dump-dom").stdout
    assert 'id="nav-done"' in dom, re.findall(r'id="nav-error">([^<]*)', dom) or "the page did not finish loading"
    chromium(exe, page.as_uri(), f"--screenshot={out}")
    print(f"screenshot: {out}")
    return dom, png_pixels(out)


def app_dom(dom: str) -> str:
    """What React rendered into the page (the dumped DOM also holds the page's scripts and embedded data)."""
    start = dom.index('<div id="app">')
    return dom[start:dom.index("<script", start)]


def test_report_renders_in_a_headless_browser(report_run, tmp_path):
    exe = ensure_chromium()
    report = report_run / "report.html"
    seed = json.loads((report_run / "results/test/metrics/seed_miou.json").read_text())
    mask = json.loads((report_run / "results/test/metrics/mask_miou.json").read_text())

    # the landing page: the workflow description with the mIoU table, the menu with the result categories
    dom, pixels = open_view(exe, report, [], tmp_path / "landing.png")
    app = app_dom(dom)
    assert "WSSS from image-level labels" in app and "mIoU per stage, experiment test" in app
    assert f"<td>{seed['miou']:.2f}</td>" in app and f"<td>{mask['miou']:.2f}</td>" in app
    for category in ("Metrics", "Samples", "Timing", "Training"):
        assert f"<span>{category}</span>" in app
    assert_not_blank(pixels, min_colours=20)

    # Samples -> the eval-split grid: shown as an <img> of the embedded PNG, and visibly a grid of label colours
    dom, pixels = open_view(exe, report, [["menu", "Samples"], ["view", "eval split"]], tmp_path / "samples.png")
    app = app_dom(dom)
    grid_png = (report_run / "results/test/report/samples_eval_split.png").read_bytes()
    assert f'<img src="data:image/png;charset=utf8;filename=samples_eval_split.png;base64,' in app
    assert base64.b64encode(grid_png).decode()[:200] in app
    assert_not_blank(pixels, min_colours=50)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert {tuple(rf.PALETTE[i]) for i in (0, 255)} <= colours  # background and void of the label maps, on screen

    # Metrics -> mIoU -> the table: an iframe of the embedded HTML table, rendered on screen
    dom, pixels = open_view(exe, report, [["menu", "Metrics"], ["menu", "mIoU"], ["view", "IoU per class"]],
                            tmp_path / "metrics.png")
    app = app_dom(dom)
    m = re.search(r'<iframe src="data:text/html;charset=utf8;filename=metrics.html;base64,([^"]+)"', app)
    assert m, "the metrics table is not shown"
    table = base64.b64decode(m.group(1)).decode()
    assert f"{seed['miou']:.2f}" in table and "IoU per class" in table
    assert_not_blank(pixels, min_colours=20)

    # Metrics -> Seeds -> the threshold sweep plot, and its caption (the "info" button)
    dom, pixels = open_view(exe, report, [["menu", "Metrics"], ["menu", "Seeds"], ["view", "threshold sweep"],
                                          ["info", "threshold sweep"]], tmp_path / "sweep.png")
    app = " ".join(app_dom(dom).split())
    assert "filename=seed_sweep.png;base64," in app
    assert "The reported seed mIoU is the best point of this sweep" in app and "ground-truth masks" in app
    assert_not_blank(pixels, min_colours=50)
