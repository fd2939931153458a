"""Pretrain a ResNet on another synthetic set, the demo's stand-in for ImageNet weights (issue 11 item 3).

On real photos BAS and the CAM start from an ImageNet network, whose features already make the discriminative part
(a face, a wheel) the easiest cue; from random init both learn whatever separates the demo's classes. This trains
the config's CAM recipe (``bas.cam``, image-level labels only) on a second generated set, by default one where every
object wears a random class's body (``body_swap_prob`` 1.0: only the part names the class), and writes its ResNet
in torchvision format, the format of the config key ``imagenet_weights``:

    PYTHONPATH=. python bench/bench_pretrain.py --workdir DIR [--configfile configs/demo.yaml] [--set KEY=VALUE ...]
    PYTHONPATH=. python bench/bench_seeds.py --set imagenet_weights=DIR/pretrained_resnet18.pth ...

The pretraining set is the config's ``data.synthetic`` with ``--set`` applied after the defaults below (experiment
``pretrain``, synthetic seed 101, body_swap_prob 1.0); no pixel label of any set is read.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_seeds import run  # noqa: E402
from bench.bench_variant import apply_override  # noqa: E402

DEFAULTS = ["experiment=pretrain", "data.synthetic.seed=101", "data.synthetic.body_swap_prob=1.0"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configfile", default="configs/demo.yaml")
    p.add_argument("--workdir", required=True, help="Snakemake working directory of the pretraining set")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"config override after the defaults {DEFAULTS} (bench_variant.py's syntax)")
    p.add_argument("--cores", type=int, default=2, help="Snakemake cores and training threads")
    a = p.parse_args()
    import torch
    import yaml

    from bas_seed.model import backbone_state_dict, load_model

    config = yaml.safe_load(Path(a.configfile).read_text())
    for assignment in DEFAULTS + a.set:
        apply_override(config, assignment)
    if config["data"]["root"]:
        raise SystemExit("bench_pretrain.py generates its set: the config's data.root must be null")
    work = Path(a.workdir).resolve()
    shutil.copytree(ROOT / "configs", work / "configs", dirs_exist_ok=True)
    res = Path("results") / config["experiment"]
    config_path = work / "results" / "pretrain_config.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    labels = res / "data" / "labels" / f"{config['data']['train_split']}.json"
    start = time.perf_counter()
    run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
         str(work), "--configfile", str(config_path), "--cores", str(a.cores), str(labels)],
        work / res / "logs" / "bench_pretrain_data.log", work)
    model = res / "pretrain" / "cam_model.pt"
    run([sys.executable, "-m", "bas_seed.train", "--voc-root", str(res / "data" / "VOC2012"), "--labels",
         str(labels), "--settings", json.dumps(config["bas"]), "--method", "cam", "--out", str(model),
         "--loss-log", str(res / "pretrain" / "cam_loss_log.jsonl"), "--device", config["device"], "--threads",
         str(a.cores), "--seed", str(config["seed"])], work / res / "logs" / "bench_pretrain_train.log", work)
    out = work / f"pretrained_resnet{config['bas']['depth']}.pth"
    tmp = out.with_name(out.name + ".tmp")
    torch.save(backbone_state_dict(load_model(work / model)), tmp)
    os.replace(tmp, out)
    print(f"{out} ({time.perf_counter() - start:.0f} s); use it with --set imagenet_weights={out}")


if __name__ == "__main__":
    main()
