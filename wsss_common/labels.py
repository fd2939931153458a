"""Build the image-level label cache of one split: ``python -m wsss_common.labels --voc-root R --split S
--class-names JSON --out FILE``. Labels come from the masks (ids 1..C-1 present, 255 ignored), or from
Annotations/<id>.xml for ids without a mask."""
from __future__ import annotations

import argparse
import json
import sys

from .voc import build_label_cache, save_label_cache


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--class-names", required=True, help="JSON list, background first")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    cache = build_label_cache(a.voc_root, a.split, json.loads(a.class_names), progress=True)
    empty = [i for i, v in cache["labels"].items() if not v]
    if empty:
        print(f"note: {len(empty)} images of {a.split} have no foreground class, e.g. {empty[:3]}", file=sys.stderr)
    save_label_cache(a.out, cache)
    print(f"{len(cache['labels'])} images of {a.split} -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
