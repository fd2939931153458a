"""Predict one shard of a split with the trained model: one palette PNG of class ids per image.

    python -m segment.predict --model results/E/segment/model.pth --voc-root ROOT --split val \
        --settings JSON --out-dir results/E/val_predictions/shard_0 --shard 0 --num-shards 4 [--device ...]

Ids come from ImageSets/Segmentation/<split>.txt, split with ``wsss_common.shards.shard_ids``. The test follows
``segment.predict``: whole image at its own size, the model's MSC max-fusion (if its config has it), optional extra
scales and flip (softmax averaged), optional dense CRF with the reference's parameters, then argmax.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model.pth written by segment.train")
    p.add_argument("--voc-root", required=True)
    p.add_argument("--split", required=True, help="split whose ids are predicted (e.g. val)")
    p.add_argument("--settings", default="{}", help="JSON object: the config section `segment`")
    p.add_argument("--out-dir", required=True, help="shard folder for <id>.png")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from wsss_common.devices import select_device, set_threads
    from wsss_common.io import save_label_png
    from wsss_common.shards import shard_ids
    from wsss_common.voc import load_image, read_split_ids

    from .inference import load_trained_model, predict_label_map
    from .settings import load_settings

    settings = load_settings(args.settings)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    device = select_device(args.device)
    set_threads(args.threads)
    ids = shard_ids(read_split_ids(args.voc_root, args.split), args.shard, args.num_shards)
    model = load_trained_model(args.model, device)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image_id in tqdm(ids, desc=f"predict {args.split} shard {args.shard}", mininterval=5, file=sys.stderr):
        rgb = load_image(args.voc_root, image_id)
        save_label_png(out_dir / f"{image_id}.png", predict_label_map(model, rgb, device, settings["predict"]))


if __name__ == "__main__":
    main()
