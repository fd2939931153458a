import hashlib

import numpy as np
import pytest

from wsss_common.synthetic import check_settings, class_style, generate
from wsss_common.voc import image_labels, labels_from_mask, load_image, load_mask, read_split_ids

from conftest import TINY_CLASSES, TINY_SETTINGS


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_independent_of_workers(tmp_path, tiny_voc):
    again = generate(tmp_path / "a" / "VOC2012", TINY_SETTINGS, TINY_CLASSES, workers=2, progress=False)
    assert _digest(again) == _digest(tiny_voc["root"])
    other = generate(tmp_path / "b" / "VOC2012", {**TINY_SETTINGS, "seed": 4}, TINY_CLASSES, progress=False)
    assert _digest(other) != _digest(tiny_voc["root"])


def test_voc_layout_and_splits(tiny_voc):
    root = tiny_voc["root"]
    train_aug, train, val = (read_split_ids(root, s) for s in ("train_aug", "train", "val"))
    assert len(train_aug) == 16 and train == train_aug[:8] and len(val) == 6
    assert all("_" in i for i in train_aug + val)
    assert all((root / "SegmentationClass" / f"{i}.png").is_file() for i in train + val)
    assert not (root / "SegmentationClass" / f"{train_aug[-1]}.png").exists()
    assert all((root / "SegmentationClassAug" / f"{i}.png").is_file() for i in train_aug)


def test_labels_masks_and_annotations_agree(tiny_voc):
    root, names = tiny_voc["root"], tiny_voc["class_names"]
    sizes = set()
    for i in read_split_ids(root, "train_aug") + read_split_ids(root, "val"):
        img, mask = load_image(root, i), load_mask(root, i)
        assert img.shape[:2] == mask.shape
        sizes.add(mask.shape)
        values = set(np.unique(mask).tolist())
        assert values <= set(range(len(names))) | {255}
        assert 255 in values                   # void band along the boundaries
        labels, source = image_labels(root, i, names)
        assert 1 <= len(labels) <= 3 and source == "annotations"
        assert labels == labels_from_mask(mask, len(names))   # the XML names exactly the classes of the mask
    assert len(sizes) > 10                     # varied sizes and aspect ratios


def test_classes_have_fixed_distinct_appearance():
    styles = [class_style(k) for k in range(1, 11)]
    assert len({s.shape for s in styles}) == 10
    assert class_style(3) == class_style(3)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="n_train_seg"):
        check_settings({"n_train": 5, "n_train_seg": 6}, TINY_CLASSES)
    with pytest.raises(ValueError, match="config key data.synthetic: .*'n_trian' was unexpected"):
        check_settings({"n_trian": 5}, TINY_CLASSES)
    assert check_settings({"n_train": 5, "n_train_seg": 2}, TINY_CLASSES)["max_side"] == 160  # schema default
