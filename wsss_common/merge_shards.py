"""Merge the shard folders of a sharded step into one index:
``python -m wsss_common.merge_shards --out INDEX --suffix .png (--ids-from LABELS_JSON | --voc-root R --split S)
shard_dir ...``. Every expected id must have exactly one output file."""
from __future__ import annotations

import argparse
import sys

from .shards import merge_shard_dirs, write_index
from .voc import load_label_cache, read_split_ids


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--suffix", required=True, help="file ending of the per-id outputs, e.g. .png or .npz")
    p.add_argument("--ids-from", help="label cache JSON whose ids are expected")
    p.add_argument("--voc-root")
    p.add_argument("--split")
    p.add_argument("shard_dirs", nargs="+")
    a = p.parse_args(argv)
    if a.ids_from:
        expected = list(load_label_cache(a.ids_from))
    elif a.voc_root and a.split:
        expected = read_split_ids(a.voc_root, a.split)
    else:
        p.error("give --ids-from or --voc-root with --split")
    index = merge_shard_dirs(a.shard_dirs, a.suffix, expected)
    write_index(a.out, index)
    print(f"{len(index['items'])} files from {len(a.shard_dirs)} shards -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
