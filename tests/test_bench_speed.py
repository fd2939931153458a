"""bench/speed.py: the table agrees with its raw JSON (ratio = ours / reference), the presets come from the YAML
configs, the reference BAS formulation gives our loss and gradients, and bench/gpu_check.sh --dry-run works."""
import copy
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bas_seed import losses
from bas_seed.model import BASNet
from bas_seed.train import parse_settings, train_step

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("speed", ROOT / "bench" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def table_rows(markdown: str) -> list[list[str]]:
    """Body rows of the Markdown table, as lists of cell texts."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| stage | preset | ours img/s | reference img/s | ratio | peak MB | notes |")
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[1:]]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed") / "speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "speed.py"), "--quick", "--device", "cpu",
                           "--presets", "demo", "--stages", "bas_train", "random_walk", "--json-out", str(out)],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = subprocess.run([sys.executable, str(ROOT / "bench" / "speed.py"), "--render-json", str(out)],
                              cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0 and rendered.stdout == proc.stdout  # the JSON holds everything the table says
    return proc.stdout, json.loads(out.read_text())


def test_quick_table_rows_are_the_json_numbers(quick_run):
    markdown, raw = quick_run
    rows = table_rows(markdown)
    assert [(r[0], r[1]) for r in rows] == [("BAS training step", "demo"), ("random walk", "demo")]
    assert [(r["stage"], r["preset"]) for r in raw["rows"]] == [("bas_train", "demo"), ("random_walk", "demo")]
    for cells, r in zip(rows, raw["rows"]):
        # raw numbers: img/s = images per timed call / median seconds; ratio = ours img/s / reference img/s
        assert r["ours_s"] == statistics.median(r["ours_times"]) and r["ref_s"] == statistics.median(r["ref_times"])
        assert r["ours_ips"] == pytest.approx(r["images"] / r["ours_s"])
        assert r["ref_ips"] == pytest.approx(r["images"] / r["ref_s"])
        assert r["ratio"] == pytest.approx(r["ours_ips"] / r["ref_ips"])
        assert r["ratio"] == pytest.approx(r["ref_s"] / r["ours_s"])
        ours, ref, ratio, peak = (float(c) for c in cells[2:6])
        for value in (ours, ref, ratio, peak):
            assert math.isfinite(value) and value > 0
        assert ours == pytest.approx(r["ours_ips"], rel=1e-3) and ref == pytest.approx(r["ref_ips"], rel=1e-3)
        assert ratio == pytest.approx(ours / ref, rel=1e-2)  # the cell rounds to 3 significant digits
        assert peak == pytest.approx(r["peak_mb"], abs=0.5) and r["peak_mb"] >= r["baseline_mb"] > 0
    bas, walk = raw["rows"]
    assert bas["ours_loss"] == pytest.approx(bas["ref_loss"], rel=1e-5)
    assert bas["images"] == 2 and "batch 2" in rows[0][6]  # --quick batch, stated in the notes
    assert walk["max_rel_diff"] < 1e-3 and walk["ratio"] > 1  # the sparse walk is faster even at 24 x 32


def test_header_says_where_and_what_was_measured(quick_run):
    markdown, raw = quick_run
    header = raw["header"]
    first = markdown.splitlines()[0]
    for key in ("cpu", "nproc", "torch", "commit", "date"):
        assert header[key] and str(header[key]) in first
    assert header["device"] == "cpu" and header["threads"] == 1 and header["quick"] is True
    assert header["torch"] == torch.__version__
    assert "device cpu" in first and "1 torch thread" in first


def test_presets_come_from_the_yaml_configs():
    demo_yaml = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    voc_yaml = yaml.safe_load((ROOT / "configs" / "voc12.yaml").read_text())
    demo, voc = speed.load_preset("demo"), speed.load_preset("voc", batches={"irn_train": 4})
    side = (demo_yaml["data"]["synthetic"]["min_side"] + demo_yaml["data"]["synthetic"]["max_side"]) // 2
    assert demo["image"] == (side, side) and voc["image"] == (375, 500) and tuple(voc["walk"]) == (94, 125)
    for preset, config in ((demo, demo_yaml), (voc, voc_yaml)):
        assert preset["bas"]["depth"] == config["bas"]["depth"] and preset["bas"]["crop"] == config["bas"]["crop"]
        assert preset["seeds"]["scales"] == config["seeds"]["scales"]
        assert preset["seeds"]["threshold_search"]["step"] == config["seeds"]["threshold_search"]["step"]
        assert preset["segment"]["model_config"] == config["segment"]["model_config"]
        assert preset["segment"]["crop_size"] == config["segment"]["crop_size"]
    assert demo["irn"]["batch_size"] == demo_yaml["irn"]["batch_size"] and voc["irn"]["batch_size"] == 4
    quick = speed.load_preset("voc", quick=True)
    assert quick["bas"]["depth"] == 18 and quick["image"] == speed.QUICK_IMAGE
    assert quick["seeds"]["scales"] == voc_yaml["seeds"]["scales"]  # only sizes shrink
    with pytest.raises(SystemExit):
        speed.parse_batches(["ir_labels=2"])


@pytest.mark.parametrize("background_bn", ["batch", "running"])
def test_reference_bas_formulation_gives_our_loss_and_gradients(background_bn):
    torch.manual_seed(0)
    settings = parse_settings({"depth": 18, "background_bn": background_bn})
    model = BASNet(num_fg=4, depth=18, class_agnostic=True, background_bn=background_bn).train()
    images = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]])
    picked = losses.pick_classes(labels, torch.Generator().manual_seed(0))
    ours_loss, ref_loss = speed.bas_losses(model, images, labels, picked, settings)
    assert ours_loss == pytest.approx(ref_loss, rel=1e-6) and math.isfinite(ours_loss)

    state = copy.deepcopy(model.state_dict())
    params = [p for p in model.parameters() if p.requires_grad]

    def gradients():
        model.load_state_dict(state)
        total, _ = train_step(model, "bas", images, labels, settings, picked)
        return total, torch.autograd.grad(total, params, allow_unused=True)

    total, ours = gradients()
    with speed.reference_formulation(model):
        assert "background_scores" in vars(model)  # the forward really runs the deep-copy branch
        ref_total, reference = gradients()
    assert "background_scores" not in vars(model)
    assert torch.allclose(total, ref_total)
    for a, b in zip(ours, reference):  # the copies' gradients are thrown away: layer4 gets the same as ours
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_write_results_replaces_only_its_block(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\nkept text\n")
    speed.replace_block(results, "first table", "speed")
    speed.replace_block(results, "second table", "speed")
    text = results.read_text()
    assert text.count("<!-- speed:start -->") == 1 and text.count("<!-- speed:end -->") == 1
    assert "second table" in text and "first table" not in text
    assert text.startswith("# Benchmarks\n\nkept text\n")
    results.write_text(text + "\ntrailing text\n")
    speed.replace_block(results, "third", "speed")
    assert results.read_text().endswith("trailing text\n") and "second table" not in results.read_text()
    speed.replace_block(results, "gpu table", marker="speed-gpu")  # a second block beside the first
    text = results.read_text()
    assert "third" in text and text.rstrip().endswith("gpu table\n<!-- speed-gpu:end -->")


def test_a_failed_stage_is_a_row_that_says_so():
    header = {"platform": "p", "cpu": "c", "nproc": "2", "torch": "t", "device": "cpu", "cuda_name": None,
              "threads": 1, "commit": "abc", "date": "d", "warmup": 1, "repeats": 1, "quick": True}
    markdown = speed.render(header, [{"stage": "ir_labels", "preset": "voc", "failed": True,
                                      "error": "ModuleNotFoundError: No module named 'pydensecrf'"}])
    (row,) = table_rows(markdown)
    assert row[:2] == ["CRF IR labels", "voc"] and row[6].startswith("FAILED: ModuleNotFoundError")


def test_gpu_check_dry_run_writes_its_files(tmp_path):
    out = tmp_path / "gpu_out"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], cwd=ROOT, timeout=300,
                          env={**env(), "OUT": str(out), "SPEED_PRESETS": "demo", "SPEED_STAGES": "random_walk"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("speed.md", "speed.json", "speed.log", "pytest_cuda.txt", "env.txt", "summary.txt"):
        assert (out / name).is_file(), name
    assert [r[:2] for r in table_rows((out / "speed.md").read_text())] == [["random walk", "demo"]]
    assert json.loads((out / "speed.json").read_text())["header"]["quick"] is True
    summary = (out / "summary.txt").read_text()
    assert "speed: exit 0" in summary and "pytest_cuda: exit 0" in summary
    assert "passed" in (out / "pytest_cuda.txt").read_text() or "skipped" in (out / "pytest_cuda.txt").read_text()
