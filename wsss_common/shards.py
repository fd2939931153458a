"""Deterministic sharding of an id list, so N jobs of a sharded rule split the work without talking."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .io import DataError, read_json, write_json_atomic

INDEX_FORMAT = "wsss-index/1"


def shard_ids(ids: list[str], shard: int, n_shards: int) -> list[str]:
    """Every n-th id starting at ``shard`` (round robin keeps shards balanced when ids are sorted by size)."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is not in 0..{n_shards - 1}")
    return list(ids[shard::n_shards])


def merge_shard_dirs(shard_dirs: list[str | Path], suffix: str, expected_ids: list[str] | None = None) -> dict:
    """Index {"format", "suffix", "items": {id: path}, "content_sha256"} of the files ``<id><suffix>`` in the shard
    folders.

    With ``expected_ids`` every id must be present exactly once: a missing or duplicated output is an error that
    names the id, rather than a silently smaller dataset downstream. ``content_sha256`` digests the ids and the
    files' bytes: Snakemake compares the checksum of a small input file with the one recorded when the consumer
    last ran and skips the consumer when it is equal, so an index of paths alone would look unchanged after its
    files were remade with other contents, and the next invocation would not rerun what reads them.
    """
    items: dict[str, str] = {}
    for d in shard_dirs:
        for f in sorted(Path(d).glob(f"*{suffix}")):
            image_id = f.name[: -len(suffix)]
            if image_id in items:
                raise DataError(f"id {image_id} appears in two shards: {items[image_id]} and {f}")
            items[image_id] = str(f)
    if expected_ids is not None:
        missing = [i for i in expected_ids if i not in items]
        if missing:
            raise DataError(f"{len(missing)} ids have no output in the shards, e.g. {missing[:5]}")
        items = {i: items[i] for i in expected_ids}
    digest = hashlib.sha256()
    for image_id, path in items.items():
        digest.update(image_id.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return {"format": INDEX_FORMAT, "suffix": suffix, "items": items, "content_sha256": digest.hexdigest()}


def write_index(path: str | Path, index: dict) -> None:
    write_json_atomic(path, index)


def load_index(path: str | Path) -> dict[str, str]:
    obj = read_json(path)
    if not isinstance(obj, dict) or obj.get("format") != INDEX_FORMAT:
        raise DataError(f"{path} is not an index of format {INDEX_FORMAT}")
    return dict(obj["items"])
