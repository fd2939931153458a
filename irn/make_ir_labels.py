"""IR labels of one shard of the seeded images (IRN ``cam_to_ir_label``):
``python -m irn.make_ir_labels --voc-root R --seeds SEED_INDEX --out-dir DIR --shard i --num-shards N
--settings JSON``. Writes DIR/<id>.png (palette: 0 confident background, class id, 255 unsure) for every id of the
shard; ids whose PNG already exists are skipped (a restarted shard resumes)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from irn.ir_labels import ir_label_from_seed, load_seed
from irn.thresholds import with_thresholds
from wsss_common.config import load_section
from wsss_common.io import DataError, save_label_png
from wsss_common.shards import load_index, shard_ids
from wsss_common.voc import load_image

log = logging.getLogger("irn.make_ir_labels")


def make_ir_label(voc_root: str, image_id: str, seed_path: str, settings: dict):
    seed = load_seed(seed_path)
    image = load_image(voc_root, image_id)
    if image.shape[:2] != seed["high_res"].shape[1:]:
        raise DataError(f"seed file {seed_path} is {seed['high_res'].shape[1:]}, image {image_id} is "
                        f"{image.shape[:2]}")
    return ir_label_from_seed(image, seed["high_res"], seed["keys"], fg_threshold=settings["fg_threshold"],
                              bg_threshold=settings["bg_threshold"], crf=settings["crf"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--seeds", required=True, help="seed index (wsss-index/1 of wsss-seed/1 npz files)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--settings", required=True, help="the config section irn, as JSON")
    p.add_argument("--thresholds", help="resolved thresholds (python -m irn.thresholds), needed when one is auto")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    settings = load_section("irn", a.settings)  # validated against irn.schema.yaml, every default filled
    thresholds = ("fg_threshold", "bg_threshold")
    settings = with_thresholds(settings, thresholds, a.thresholds)  # auto replaced by the resolved numbers
    log.info("%s", ", ".join(f"{k} {settings[k]}" for k in thresholds))
    seeds = load_index(a.seeds)
    ids = shard_ids(list(seeds), a.shard, a.num_shards)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image_id in tqdm(ids, desc=f"ir labels shard {a.shard}", mininterval=5):
        out = out_dir / f"{image_id}.png"
        if not out.exists():
            save_label_png(out, make_ir_label(a.voc_root, image_id, seeds[image_id], settings))
    log.info("%d IR labels in %s", len(ids), out_dir)


if __name__ == "__main__":
    main()
