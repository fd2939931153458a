"""The rehearsal of the paper's path: configs/voc12.yaml, unchanged except for configs/voc12_rehearsal.yaml (sizes
only), run on CPU from the images to val_miou.json on a tiny generated VOC layout, with weight files written here
in the real formats (torchvision ResNet-50, deeplab-pytorch caffe ResNet-101) holding random values: exactly README's
`python -m wsss_common.rehearsal_data --out DIR` then the rehearsal line with `--directory DIR`.

It exercises every path only voc12 reaches: Bottleneck ResNet-50 BAS with the agnostic head from the ImageNet file,
the CAM trained with IRN's recipe and fused into the seeds, 4-scale + flip export with the image-specific threshold
search, IRN at radius 10 on the frozen ImageNet backbone with the flip pair, the walk at exp_times 8, the caffe
ResNet-101 MSC DeepLab with frozen BN and converted init through the mmengine Runner, and test-time CRF. Then: a
replaced weight file reruns exactly the stages that read it, and the load-time refusals name their keys.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import planned_rules
from wsss_common.rehearsal_data import DEEPLAB_INIT, IMAGENET, VOC_ROOT
from wsss_common.voc import VOC_CLASSES

ROOT = Path(__file__).resolve().parents[1]
# Keys the rehearsal override may set: sizes, counts and the experiment folder, never a method setting.
SIZE_KEYS = {"experiment", "epochs", "batch_size", "resize", "crop", "crop_size", "resize_long", "max_images",
             "max_train_images", "num_workers", "shards", "label_shards", "mask_shards", "predict_shards",
             "infer_pad_size", "iterations", "checkpoint_interval", "log_interval"}


def smk(workdir, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(workdir)]
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-5000:]}\n"
                             f"{p.stderr[-5000:]}")
    return p


def leaf_keys(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaf_keys(v, prefix + (k,))
        else:
            yield prefix + (k,)


def rehearsal_args(*extra):
    """README's rehearsal line (after `python -m wsss_common.rehearsal_data --out DIR`, run in DIR)."""
    return ("--cores", "2", "--configfile", str(ROOT / "configs" / "voc12.yaml"),
            str(ROOT / "configs" / "voc12_rehearsal.yaml"), *extra)


# ---- the rehearsal ------------------------------------------------------------------------------------------------

def test_the_override_only_shrinks_sizes():
    override = yaml.safe_load((ROOT / "configs" / "voc12_rehearsal.yaml").read_text())
    voc12 = yaml.safe_load((ROOT / "configs" / "voc12.yaml").read_text())
    for path in leaf_keys(override):
        assert path[-1] in SIZE_KEYS, f"configs/voc12_rehearsal.yaml sets {'.'.join(path)}, which is not a size"
        node = voc12
        for part in path[:-1]:
            node = node[part]
        assert path[-1] in node, f"{'.'.join(path)} is not a key of configs/voc12.yaml"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    work = tmp_path_factory.mktemp("voc12_rehearsal") / "rehearsal"
    made = subprocess.run([sys.executable, "-m", "wsss_common.rehearsal_data", "--out", str(work)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-3000:]
    again = subprocess.run([sys.executable, "-m", "wsss_common.rehearsal_data", "--out", str(work)],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "not overwriting" in again.stderr  # never replaces a real file
    started = time.time()
    p = smk(work, "all", *rehearsal_args())  # seeds, masks, voc_val_miou and the report
    return {"work": work, "voc": work / VOC_ROOT, "results": work / "results" / "voc12_rehearsal",
            "seconds": time.time() - started, "stdout": p.stdout + p.stderr}


def test_the_stand_in_files_are_where_voc12_looks():
    voc12 = yaml.safe_load((ROOT / "configs" / "voc12.yaml").read_text())
    assert (voc12["data"]["root"], voc12["imagenet_weights"], voc12["segment"]["init"]["checkpoint"]) == (
        VOC_ROOT, IMAGENET, DEEPLAB_INIT)


def test_rehearsal_runs_the_paper_pipeline_to_val_miou(rehearsal):
    results = rehearsal["results"]
    seed = json.loads((results / "metrics" / "seed_miou.json").read_text())
    mask = json.loads((results / "metrics" / "mask_miou.json").read_text())
    val = json.loads((results / "metrics" / "val_miou.json").read_text())
    # weak labels came from the XML of every id; 6 of the 12 train_aug ids have no mask at all
    for m in (seed, mask, val):
        assert m["image_labels_source"] == {"annotations": 12, "masks": 0}
        assert set(m["per_class"]) == set(VOC_CLASSES)
    assert seed["n_images"] == mask["n_images"] == 6 and val["n_images"] == 6 and val["split"] == "val"
    # seeds: the CAM-fused seed, with BAS alone (agnostic-fused and class-specific) reported beside it
    assert set(seed["variants"]) == {"bas_class_specific", "bas_foreground"}
    assert seed["image_specific_miou"] is not None
    assert list(seed["threshold_sweep"])[0] == "0.05" and list(seed["threshold_sweep"])[-1] == "0.6"
    # the segmenter: the caffe init named in voc12, test-time CRF
    assert val["segmenter_init"] == "imagenet-caffe-r101" and val["val_crf"] is True


def test_rehearsal_trained_each_model_from_the_given_files(rehearsal):
    from bas_seed.model import load_model
    from wsss_common.training import load_checkpoint

    work, results = rehearsal["work"], rehearsal["results"]
    imagenet = torch.load(work / IMAGENET, weights_only=True)
    bas = load_checkpoint(results / "bas_seed" / "model.pt")
    assert bas["model_config"] == {"method": "bas", "depth": 50, "num_fg": 20, "class_agnostic": True}
    # Bottleneck ResNet-50 from the file: BN betas are never trained (train_biases false), the convs moved little
    assert torch.equal(bas["model"]["layer2.0.bn3.bias"], imagenet["layer2.0.bn3.bias"])
    assert torch.allclose(bas["model"]["stem.0.weight"], imagenet["conv1.weight"], atol=1e-2)
    assert not torch.equal(bas["model"]["stem.0.weight"], imagenet["conv1.weight"])
    cam = load_model(results / "bas_seed" / "cam_model.pt")
    assert type(cam).__name__ == "CAMNet"
    # IRN's recipe freezes the stem: its conv1 is the file's, bit for bit
    assert torch.equal(cam.stem[0].weight, imagenet["conv1.weight"])
    # the DeepLab init went through the converter and the Runner: frozen BN keeps the file's values exactly
    init = torch.load(work / DEEPLAB_INIT, weights_only=True)
    seg = torch.load(results / "segment" / "model.pth", map_location="cpu", weights_only=False)
    seg = seg.get("state_dict", seg)
    assert torch.equal(seg["backbone.bn1.weight"], init["layer1.conv1.bn.weight"])
    assert torch.equal(seg["backbone.layer3.22.bn2.running_var"], init["layer4.block23.conv3x3.bn.running_var"])
    summary = json.loads((results / "segment" / "model.json").read_text())
    assert summary["init"]["checkpoint"].endswith(DEEPLAB_INIT)


def test_rehearsal_logs_show_the_voc12_paths(rehearsal):
    logs = rehearsal["results"] / "logs"
    export_log = (logs / "export_seeds_0.log").read_text()
    assert "scales [1.0, 0.5, 1.5, 2.0]" in export_log and "fuse_cam True" in export_log
    assert "9 thresholds" in export_log  # the voc12 grid 0.20..0.44 by 0.03


def test_a_replaced_weight_file_reruns_exactly_the_stages_that_read_it(rehearsal):
    work = rehearsal["work"]
    assert planned_rules(smk(work, "all", "-n", *rehearsal_args()).stdout) == set()
    later = time.time() + 5
    os.utime(work / DEEPLAB_INIT, (later, later))
    rerun = planned_rules(smk(work, "all", "-n", *rehearsal_args()).stdout)
    assert rerun == {"train_segmenter", "predict_val", "merge_val_predictions", "eval_val", "report", "all"}
    os.utime(work / IMAGENET, (later, later))
    rerun = planned_rules(smk(work, "all", "-n", *rehearsal_args()).stdout)
    assert {"train_bas", "train_cam", "train_irn", "export_seeds", "make_pseudo_masks"} <= rerun
    assert not rerun & {"image_labels"}


# ---- refusals when the workflow loads (seconds) ---------------------------------------------------------

@pytest.fixture
def dry_workdir(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    return tmp_path


@pytest.mark.parametrize("override, message", [
    ({"imagenet_weights": "missing/resnet50.pth"},
     "config key imagenet_weights: file not found: missing/resnet50.pth"),
    ({"segment": {"init": {"checkpoint": "missing/init.pth"}}}, "config key segment.init.checkpoint: file not found"),
    ({"irn": {"init_from_bas": False}}, "config key irn.freeze_backbone is true but there are no backbone weights"),
    ({"segment": {"model_config": "configs/segment/deeplabv2_r101_msc.py"}},
     "config key segment.init.checkpoint is null (from scratch) but segment.model_config"),
], ids=["imagenet-missing", "init-missing", "frozen-random-irn", "frozen-bn-from-scratch"])
def test_settings_that_would_waste_a_run_are_refused_when_the_workflow_loads(dry_workdir, override, message):
    # configs/test.yaml trains the pretrained stand-in; these are voc12's cases, whose models start from a file or
    # from random init
    (dry_workdir / "override.yaml").write_text(yaml.safe_dump({"pretraining": {"enabled": False}, **override}))
    # a real run (a dry run only warns about a missing file): it must stop when the workflow loads
    p = smk(dry_workdir, "--cores", "1", "--configfile", "configs/test.yaml", "override.yaml", check=False)
    assert p.returncode != 0 and message in p.stdout + p.stderr
    assert not (dry_workdir / "results").exists()


def test_torchvision_v2_weights_get_a_warning(dry_workdir):
    (dry_workdir / "resnet18-11ad3fa6.pth").write_bytes(b"")
    (dry_workdir / "override.yaml").write_text(yaml.safe_dump({"pretraining": {"enabled": False},
                                                               "imagenet_weights": "resnet18-11ad3fa6.pth"}))
    p = smk(dry_workdir, "-n", "--configfile", "configs/test.yaml", "override.yaml")
    assert "IMAGENET1K_V2" in p.stdout + p.stderr
    assert "train_bas" in planned_rules(p.stdout)
