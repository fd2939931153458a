"""The training set of this stage: VOC images paired with the pseudo masks of an index (never the ground truth)."""
from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
from mmengine.dataset import InfiniteSampler
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATA_SAMPLERS, DATASETS

from wsss_common.io import DataError
from wsss_common.shards import load_index


def pseudo_mask_pairs(index_file: str | Path, image_dir: str | Path) -> list[tuple[str, str, str]]:
    """(id, image path, pseudo-mask path) for every id of a ``wsss-index/1`` index, sorted by id; every file must
    exist (the error names the missing one)."""
    items = load_index(index_file)
    if not items:
        raise DataError(f"pseudo-mask index lists no images: {index_file}")
    pairs = []
    for image_id in sorted(items):
        image = Path(image_dir) / f"{image_id}.jpg"
        mask = Path(items[image_id])
        if not image.is_file():
            raise DataError(f"image of {image_id} (listed in {index_file}) not found: {image}")
        if not mask.is_file():
            raise DataError(f"pseudo mask of {image_id} (listed in {index_file}) not found: {mask}")
        pairs.append((image_id, str(image), str(mask)))
    return pairs


@DATASETS.register_module()
class PseudoMaskSegDataset(BaseSegDataset):
    """mmseg dataset over ``index_file`` (id -> palette PNG of class ids 0..C-1, 255 ignored) and the JPEGs of
    ``image_dir``. ``metainfo`` must carry ``classes`` (the data section's class names).

    Given a code ``position * len(self) + index`` from :class:`PositionSeededInfiniteSampler`, it seeds numpy's and
    Python's global RNGs (which mmcv/mmseg's random transforms draw from) from (``augment_seed``, position) before
    running the pipeline on sample ``index``, so the augmentation of every sample of the stream is fixed by its
    position alone: a resumed run (whose sampler skips indices without loading data) and any number of loader
    workers produce the same crops, scales and flips as an uninterrupted run.
    """

    def __init__(self, index_file: str, image_dir: str, augment_seed: int = 0, **kwargs):
        self.index_file = str(index_file)
        self.image_dir = str(image_dir)
        self.augment_seed = int(augment_seed)
        kwargs.setdefault("ann_file", "")
        kwargs.setdefault("reduce_zero_label", False)
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        return [dict(img_path=image, seg_map_path=mask, image_id=image_id, label_map=self.label_map,
                     reduce_zero_label=self.reduce_zero_label, seg_fields=[])
                for image_id, image, mask in pseudo_mask_pairs(self.index_file, self.image_dir)]

    def __getitem__(self, code: int) -> dict:
        n = len(self)
        if code >= n:
            position, index = divmod(int(code), n)
            seed = int(np.random.SeedSequence([self.augment_seed, position]).generate_state(1)[0])
            np.random.seed(seed)
            random.seed(seed)
            code = index
        return super().__getitem__(code)


@DATA_SAMPLERS.register_module()
class PositionSeededInfiniteSampler(InfiniteSampler):
    """mmengine's InfiniteSampler (same shuffled index stream, same ``skip`` for resuming) that yields
    ``position * len(dataset) + index`` with the absolute stream position, for :class:`PseudoMaskSegDataset` to seed
    each sample's augmentation. Positions start at 1 so every code is >= len(dataset)."""

    def _indices_of_rank(self):
        stream = itertools.islice(self._infinite_indices(), self.rank, None, self.world_size)
        for position, index in enumerate(stream, start=1):
            yield position * self.size + index
