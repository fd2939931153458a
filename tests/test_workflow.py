"""The Snakemake workflow on the tiny test config: dry runs of every target, config errors before any job, one
real end-to-end run, and reruns after a parameter change touch only the changed stage and what follows."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import planned_rules

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["seeds", "masks", "voc_val_miou", "all"]


def smk(workdir, *args, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(workdir), *args]
    p = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    return tmp_path


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_of_every_target(workdir, target):
    out = smk(workdir, target, "-n", "--cores", "2", "--configfile", "configs/test.yaml").stdout
    assert "This was a dry-run" in out
    assert {"make_synthetic_voc", "image_labels"} <= planned_rules(out)


@pytest.mark.parametrize("config", ["demo.yaml"])
def test_dry_run_of_shipped_configs(workdir, config):
    out = smk(workdir, "-n", "-p", "--cores", "2", "--configfile", f"configs/{config}").stdout
    assert "This was a dry-run" in out
    # the demo's segmenter starts from the BAS network: its checkpoint is an input and reaches the CLI
    train = out[out.index("rule train_segmenter:"):]
    assert "results/demo/bas_seed/model.pt" in train.split("output:")[0]
    assert "segment.train --bas-checkpoint results/demo/bas_seed/model.pt" in train
    # and BAS starts from the workflow's pretrained stand-in for ImageNet
    bas = out[out.index("rule train_bas:"):]
    assert "--imagenet-weights results/demo/pretraining/pretrained_resnet18.pth" in bas.split("rule ")[1]
    assert "rule pretrain_cam:" in out


def test_segmenter_from_bas_needs_the_bas_depth(workdir):
    import yaml

    cfg = yaml.safe_load((workdir / "configs" / "demo.yaml").read_text())
    cfg["segment"]["backbone_depth"] = 50
    (workdir / "configs" / "deep.yaml").write_text(yaml.safe_dump(cfg))
    p = smk(workdir, "-n", "--configfile", "configs/deep.yaml", check=False)
    assert p.returncode != 0 and "segment.init.from_bas is true but segment.backbone_depth (50)" in p.stdout + p.stderr


def test_config_errors_fail_before_any_job(workdir):
    p = smk(workdir, "-n", "--configfile", "configs/test.yaml", "--config", "devcie=cpu", check=False)
    assert p.returncode != 0 and "'devcie' was unexpected" in p.stdout + p.stderr
    p = smk(workdir, "--cores", "1", "--configfile", "configs/voc12.yaml", check=False)  # no data.root here
    assert p.returncode != 0 and "config key data.root" in p.stdout + p.stderr
    assert "config key imagenet_weights: file not found" not in p.stdout + p.stderr  # it stopped at the first
    assert not (workdir / "results").exists()
    # a dry run shows the plan instead, with a warning per missing file; it runs nothing
    p = smk(workdir, "-n", "--cores", "1", "--configfile", "configs/voc12.yaml")
    for key in ("data.root", "imagenet_weights", "segment.init.checkpoint"):
        assert f"warning (dry run): config key {key}" in p.stderr
    assert "train_bas" in planned_rules(p.stdout) and not (workdir / "results").exists()


# ---------------------------------------------------------------------------------------------------------------
# one real run of the whole DAG on the tiny config, then dry runs after parameter changes

STAGE_RULES = {
    "seeds": {"train_bas", "export_seeds", "merge_seeds", "eval_seeds"},
    "irn": {"irn_thresholds", "make_ir_labels", "merge_ir_labels", "train_irn", "make_pseudo_masks", "merge_pseudo_masks", "eval_masks"},
    "segment": {"train_segmenter", "predict_val", "merge_val_predictions", "eval_val"},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("e2e")
    shutil.copytree(ROOT / "configs", wd / "configs")
    smk(wd, "all", "--cores", "2", "--configfile", "configs/test.yaml")
    return wd


def test_end_to_end_writes_every_metric_and_the_report(finished_run):
    import yaml

    names = yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())["data"]["class_names"]
    metrics = finished_run / "results" / "test" / "metrics"
    for name, split in (("seed_miou", "train"), ("mask_miou", "train"), ("val_miou", "val")):
        m = json.loads((metrics / f"{name}.json").read_text())
        assert m["split"] == split and m["n_images"] == 8
        assert set(m["per_class"]) == set(names)
        # the metric, checked against the files it is computed from: every class of data.class_names, in order; the
        # mIoU is the mean of the per-class IoUs present; the masks' and the segmenter's numbers recomputed from the
        # PNGs and the ground-truth PNGs with a few lines of numpy (IRN's eval: GT 255 ignored, a predicted value
        # outside 0..C-1 counts as background)
        import numpy as np
        from PIL import Image

        assert list(m["per_class"]) == names
        present = [v for v in m["per_class"].values() if v is not None]
        assert present and m["miou"] == pytest.approx(sum(present) / len(present), abs=1e-3)
        folder = {"mask_miou": "pseudo_masks", "val_miou": "val_predictions"}.get(name)
        if folder:
            voc = finished_run / "results" / "test" / "data" / "VOC2012"
            index = json.loads((finished_run / "results" / "test" / folder / "index.json").read_text())["items"]
            inter, union = np.zeros(len(names)), np.zeros(len(names))
            ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
            for image_id in ids:
                gt = np.array(Image.open(voc / "SegmentationClass" / f"{image_id}.png"))
                pred = np.array(Image.open(finished_run / index[image_id]))
                pred = np.where(pred < len(names), pred, 0)
                for c in range(len(names)):
                    g, p = (gt == c), (pred == c) & (gt != 255)
                    inter[c] += np.sum(g & p)
                    union[c] += np.sum(g | p)
            iou = {n: 100 * i / u for n, i, u in zip(names, inter, union) if u > 0}
            assert len(ids) == m["n_images"] and {n for n, v in m["per_class"].items() if v is not None} == set(iou)
            assert {n: m["per_class"][n] for n in iou} == pytest.approx(iou, abs=1e-3)
            assert m["miou"] == pytest.approx(sum(iou.values()) / len(iou), abs=1e-3)
        assert (metrics / f"{name}.md").is_file()
    assert "mask_miou" in (finished_run / "results" / "test" / "report.md").read_text()
    seeds = json.loads((finished_run / "results" / "test" / "seeds" / "index.json").read_text())["items"]
    masks = json.loads((finished_run / "results" / "test" / "pseudo_masks" / "index.json").read_text())["items"]
    assert len(seeds) == len(masks) == 24                       # every train_aug id, across the shards


def _dry_run_with(wd, change):
    import yaml

    cfg = yaml.safe_load((wd / "configs" / "test.yaml").read_text())
    change(cfg)
    (wd / "configs" / "changed.yaml").write_text(yaml.safe_dump(cfg))
    return planned_rules(smk(wd, "all", "-n", "--cores", "2", "--configfile", "configs/changed.yaml").stdout)


def test_complete_run_has_nothing_to_do(finished_run):
    out = smk(finished_run, "all", "-n", "--cores", "2", "--configfile", "configs/test.yaml").stdout
    assert "Nothing to be done" in out


def test_segmenter_change_reruns_only_the_segmenter(finished_run):
    rules = _dry_run_with(finished_run, lambda c: c["segment"].update(lr=0.02))
    assert rules == STAGE_RULES["segment"] | {"report", "all"}


def test_random_walk_change_reruns_masks_and_what_follows_but_not_training(finished_run):
    rules = _dry_run_with(finished_run, lambda c: c["irn"].update(beta=9))
    assert {"make_pseudo_masks", "eval_masks", "train_segmenter", "eval_val"} <= rules
    assert not rules & (STAGE_RULES["seeds"] | {"train_irn", "make_ir_labels", "make_synthetic_voc"})


def test_seed_training_change_reruns_everything_after_the_data(finished_run):
    rules = _dry_run_with(finished_run, lambda c: c["bas"].update(alpha=0.3))
    assert STAGE_RULES["seeds"] | STAGE_RULES["irn"] | STAGE_RULES["segment"] <= rules
    assert "make_synthetic_voc" not in rules and "image_labels" not in rules
    assert not rules & PRETRAINING_RULES  # a BAS-only key does not touch the stand-in for ImageNet
    rules = _dry_run_with(finished_run, lambda c: c.update(seed=3))  # another training seed, the same stand-in
    assert "train_bas" in rules and not rules & PRETRAINING_RULES


PRETRAINING_RULES = {"make_pretraining_voc", "pretraining_labels", "pretrain_cam", "export_pretrained_backbone"}


def test_pretraining_starts_bas_from_a_resnet_trained_on_other_images(finished_run):
    """The stand-in for ImageNet: the CAM trained on the pretraining set (other images, the main set's classes),
    its ResNet written under torchvision's names, and BAS trained from that file."""
    import numpy as np
    import torch
    from PIL import Image

    from wsss_common.training import load_checkpoint

    results = finished_run / "results" / "test"
    main_voc, pre_voc = results / "data" / "VOC2012", results / "pretraining" / "data" / "VOC2012"
    image_id = (main_voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()[0]
    assert not np.array_equal(np.array(Image.open(main_voc / "JPEGImages" / f"{image_id}.jpg")),
                              np.array(Image.open(pre_voc / "JPEGImages" / f"{image_id}.jpg")))
    cam = load_checkpoint(results / "pretraining" / "cam_model.pt")
    assert cam["model_config"]["method"] == "cam" and cam["backbone_init"] == "random" and cam["seed"] == 0
    state = torch.load(results / "pretraining" / "pretrained_resnet18.pth", weights_only=True)
    import torchvision

    expected = {k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")}
    assert set(state) == expected
    assert torch.equal(state["conv1.weight"], cam["model"]["stem.0.weight"])
    assert torch.equal(state["layer3.1.bn2.running_mean"], cam["model"]["layer3.1.bn2.running_mean"])
    bas = load_checkpoint(results / "bas_seed" / "model.pt")
    assert bas["backbone_init"] == "results/test/pretraining/pretrained_resnet18.pth"
    assert not torch.equal(bas["model"]["stem.0.weight"], state["conv1.weight"])  # and trained on from there


def test_pretraining_change_reruns_the_stand_in_and_every_model_but_not_the_main_set(finished_run):
    rules = _dry_run_with(finished_run, lambda c: c["pretraining"]["synthetic"].update(part_radius=0.3))
    assert PRETRAINING_RULES | STAGE_RULES["seeds"] | {"train_segmenter"} <= rules
    assert "make_synthetic_voc" not in rules and "image_labels" not in rules
    rules = _dry_run_with(finished_run, lambda c: c["bas"]["cam"].update(lr=0.02))  # the pretraining's recipe
    assert {"pretrain_cam", "export_pretrained_backbone", "train_bas"} <= rules
    assert not rules & {"make_pretraining_voc", "pretraining_labels", "make_synthetic_voc"}
    rules = _dry_run_with(finished_run, lambda c: c["pretraining"].update(enabled=False))  # back to random init
    assert "train_bas" in rules and not rules & PRETRAINING_RULES


def test_every_model_that_starts_from_imagenet_starts_from_the_stand_in(workdir):
    """With pretraining on, the CAM of the fused export and IRN (without init_from_bas) take the pretrained file
    where they would take imagenet_weights; the pretraining CAM itself starts from random init."""
    import yaml

    cfg = yaml.safe_load((workdir / "configs" / "test.yaml").read_text())
    cfg["seeds"]["fuse_cam"] = True
    cfg["irn"]["init_from_bas"] = False
    (workdir / "configs" / "all_from_file.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(workdir, "all", "-n", "-p", "--cores", "2", "--configfile", "configs/all_from_file.yaml").stdout
    weights = "--imagenet-weights results/test/pretraining/pretrained_resnet18.pth"
    for rule in ("train_bas", "train_cam", "train_irn", "pretrain_cam"):
        job = out[out.index(f"rule {rule}:"):]
        job = job[:job.index("\n\n")] if "\n\n" in job else job
        assert (weights in job) == (rule != "pretrain_cam"), job[:3000]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(imagenet_weights="configs/test.yaml"),
     "config keys pretraining.enabled and imagenet_weights exclude each other"),
    (lambda c: c["data"].update(root="configs"), "pretraining.enabled is true but data.root is a real dataset"),
    (lambda c: c["pretraining"]["synthetic"].update(seed=1), "config key pretraining.synthetic.seed: 1 is data.synthetic.seed"),
    (lambda c: c["pretraining"]["synthetic"].update(n_trian=5), "config key pretraining.synthetic.n_trian: not a data.synthetic key"),
    (lambda c: c["pretraining"]["synthetic"].update(part_radius=2), "config key pretraining.synthetic.part_radius: 2 is greater"),
])
def test_pretraining_config_errors_fail_at_load(workdir, change, message):
    import yaml

    cfg = yaml.safe_load((workdir / "configs" / "test.yaml").read_text())
    change(cfg)
    (workdir / "configs" / "bad.yaml").write_text(yaml.safe_dump(cfg))
    p = smk(workdir, "-n", "--configfile", "configs/bad.yaml", check=False)
    assert p.returncode != 0 and message in p.stdout + p.stderr, p.stdout[-2000:] + p.stderr[-2000:]


def test_auto_thresholds_come_from_the_seeds_image_specific_thresholds(finished_run):
    import numpy as np

    results = finished_run / "results" / "test"
    crf = json.loads((results / "irn" / "thresholds_ir_labels.json").read_text())
    walk = json.loads((results / "irn" / "thresholds_walk.json").read_text())
    seeds = json.loads((results / "seeds" / "index.json").read_text())["items"]
    searched = [float(np.load(finished_run / p)["threshold"]) for p in seeds.values()]
    median = float(np.median([t for t in searched if np.isfinite(t)]))
    assert crf["auto"] == ["fg_threshold", "bg_threshold"] and crf["n_images"] == len(seeds)
    assert crf["fg_threshold"] == pytest.approx(median, abs=1e-6)                # 0.30 x median / 0.30
    assert crf["bg_threshold"] == pytest.approx(0.17 * median / 0.30, abs=1e-6)
    assert walk["auto"] == [] and walk["sem_seg_bg_threshold"] == 0.22
    log = (results / "logs" / "make_ir_labels_0.log").read_text()
    assert f"fg_threshold {crf['fg_threshold']}" in log  # the CRF step used the resolved value


def test_walk_threshold_change_reruns_the_masks_but_not_the_ir_labels(finished_run):
    rules = _dry_run_with(finished_run, lambda c: c["irn"].update(sem_seg_bg_threshold="auto"))
    assert {"irn_thresholds", "make_pseudo_masks", "eval_masks", "train_segmenter"} <= rules
    assert not rules & {"make_ir_labels", "train_irn", "export_seeds"}
    rules = _dry_run_with(finished_run, lambda c: c["irn"]["auto_reference"].update(bg_threshold=0.1))
    assert {"irn_thresholds", "make_ir_labels", "train_irn", "make_pseudo_masks"} <= rules


def test_auto_thresholds_without_the_search_are_refused_at_load(workdir):
    import yaml

    cfg = yaml.safe_load((workdir / "configs" / "test.yaml").read_text())
    cfg["seeds"]["threshold_search"]["enabled"] = False
    (workdir / "configs" / "nosearch.yaml").write_text(yaml.safe_dump(cfg))
    p = smk(workdir, "-n", "--configfile", "configs/nosearch.yaml", check=False)
    assert p.returncode != 0 and "irn.fg_threshold, irn.bg_threshold are auto" in p.stderr + p.stdout
    assert "seeds.threshold_search.enabled" in p.stderr + p.stdout


def test_sweep_change_only_re_evaluates_seeds(finished_run):
    rules = _dry_run_with(finished_run, lambda c: c["seeds"]["sweep"].update(step=0.02))
    assert rules == {"eval_seeds", "report", "all"}


def test_remade_masks_rerun_their_readers_in_a_later_invocation(finished_run, tmp_path):
    """Snakemake skips a job whose small inputs keep their recorded checksum: the pseudo-mask index must change
    when the masks do, or a later `snakemake all` would keep a segmenter trained on the old masks."""
    import yaml

    wd = tmp_path / "copy"
    shutil.copytree(finished_run, wd, symlinks=True)
    cfg = yaml.safe_load((wd / "configs" / "test.yaml").read_text())
    cfg["irn"]["beta"] = 3  # other walk, other masks
    (wd / "configs" / "walk.yaml").write_text(yaml.safe_dump(cfg))
    before = json.loads((wd / "results" / "test" / "pseudo_masks" / "index.json").read_text())
    smk(wd, "results/test/pseudo_masks/index.json", "--cores", "2", "--configfile", "configs/walk.yaml")
    after = json.loads((wd / "results" / "test" / "pseudo_masks" / "index.json").read_text())
    assert after["items"] == before["items"] and after["content_sha256"] != before["content_sha256"]
    rules = planned_rules(smk(wd, "all", "-n", "--cores", "2", "--configfile", "configs/walk.yaml").stdout)
    assert {"eval_masks", "train_segmenter", "eval_val"} <= rules and "make_pseudo_masks" not in rules
