"""The training set of this stage: VOC images paired with the pseudo masks of an index (never the ground truth)."""
from __future__ import annotations

from pathlib import Path

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

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
    ``image_dir``. ``metainfo`` must carry ``classes`` (the data section's class names)."""

    def __init__(self, index_file: str, image_dir: str, **kwargs):
        self.index_file = str(index_file)
        self.image_dir = str(image_dir)
        kwargs.setdefault("ann_file", "")
        kwargs.setdefault("reduce_zero_label", False)
        super().__init__(**kwargs)

    def load_data_list(self) -> list[dict]:
        return [dict(img_path=image, seg_map_path=mask, image_id=image_id, label_map=self.label_map,
                     reduce_zero_label=self.reduce_zero_label, seg_fields=[])
                for image_id, image, mask in pseudo_mask_pairs(self.index_file, self.image_dir)]
