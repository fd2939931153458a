"""bench/bench_pretrain.py: a CAM trained on a second generated set, written as an ``imagenet_weights`` file."""
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_pretraining_writes_the_trained_resnet_in_the_imagenet_weights_format(tmp_path):
    """On configs/test.yaml: the pretraining set is the config's with the script's defaults, a --set after them wins;
    the file holds the trained CAM's ResNet under torchvision names and loads as ``imagenet_weights``."""
    from bas_seed.model import build_model
    from wsss_common.training import load_checkpoint

    work = tmp_path / "w"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_pretrain.py"), "--configfile", str(ROOT / "configs" / "test.yaml"),
         "--workdir", str(work), "--set", "data.synthetic.part_radius=0.3"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    synthetic = yaml.safe_load((work / "results" / "pretrain_config.yaml").read_text())["data"]["synthetic"]
    assert (synthetic["seed"], synthetic["body_swap_prob"], synthetic["part_radius"]) == (101, 1.0, 0.3)
    assert (work / "results" / "pretrain" / "data" / "VOC2012" / "JPEGImages").is_dir()

    out = work / "pretrained_resnet18.pth"
    state = torch.load(out, weights_only=True)
    trained = load_checkpoint(work / "results" / "pretrain" / "pretrain" / "cam_model.pt")
    assert torch.equal(state["conv1.weight"], trained["model"]["stem.0.weight"])
    assert torch.equal(state["bn1.running_var"], trained["model"]["stem.1.running_var"])
    assert torch.equal(state["layer4.1.conv2.weight"], trained["model"]["layer4.1.conv2.weight"])
    assert not any(k.startswith(("classifier", "stem", "fc")) for k in state)
    net = build_model({"method": "bas", "depth": 18, "num_fg": trained["model_config"]["num_fg"]}, weights=str(out))
    assert torch.equal(net.stem[0].weight, trained["model"]["stem.0.weight"])
    assert not list(work.glob("*.tmp"))
