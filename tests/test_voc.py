"""The VOC reader on a small real-layout fixture: palette PNGs with a 255 band, odd sizes, ids with underscores,
SegmentationClassAug and Annotations fallbacks, and clear errors for bad files."""
import numpy as np
import pytest
from PIL import Image

from wsss_common.io import DataError, save_label_png
from wsss_common.voc import (VOC_CLASSES, build_label_cache, image_labels, load_image, load_label_cache, load_mask,
                             multi_hot, read_split_ids, save_label_cache)


def _xml(names):
    objs = "".join(f"<object><name>{n}</name><difficult>1</difficult></object>" for n in names)
    return f"<annotation><filename>x.jpg</filename>{objs}</annotation>"


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"2007_000032": (37, 53), "2008_001234": (50, 29), "2011_003276": (41, 41)}
    for i, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    m = np.zeros((37, 53), np.uint8)
    m[5:20, 10:30] = 15          # person
    m[4, 10:30] = 255            # void band
    m[25:30, 40:50] = 1          # aeroplane
    save_label_png(root / "SegmentationClass" / "2007_000032.png", m)
    m2 = np.zeros((50, 29), np.uint8)
    m2[10:20, 5:9] = 8
    m2[9, :] = 255
    save_label_png(root / "SegmentationClassAug" / "2008_001234.png", m2)   # train_aug id: only the Aug mask
    (root / "Annotations" / "2011_003276.xml").write_text(_xml(["dog", "person", "dog"]))  # no mask at all
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("2007_000032\n")
    (sets / "train_aug.txt").write_text("2007_000032\n2008_001234\n2011_003276\n\n")
    (sets / "val.txt").write_text("2007_000032\n")
    return root


def test_ids_are_strings_never_numbers(voc):
    assert read_split_ids(voc, "train_aug") == ["2007_000032", "2008_001234", "2011_003276"]


def test_images_and_masks_keep_odd_sizes(voc):
    assert load_image(voc, "2008_001234").shape == (50, 29, 3)
    m = load_mask(voc, "2007_000032")
    assert m.shape == (37, 53) and m.dtype == np.uint8 and set(np.unique(m)) == {0, 1, 15, 255}


def test_labels_from_masks_then_aug_masks_then_annotations(voc):
    assert image_labels(voc, "2007_000032", VOC_CLASSES) == ([1, 15], "masks")   # 255 and 0 are not labels
    assert image_labels(voc, "2008_001234", VOC_CLASSES) == ([8], "masks")       # SegmentationClassAug fallback
    assert image_labels(voc, "2011_003276", VOC_CLASSES) == ([12, 15], "annotations")


def test_the_annotation_xml_wins_over_the_mask(voc):
    """Weak labels come from the XML (every <name>, as IRN's cls_labels); the mask only when there is no XML. A
    small object named in the XML but lost in the mask (or a mask class absent from the XML) shows which was read."""
    (voc / "Annotations" / "2007_000032.xml").write_text(_xml(["person", "bottle"]))  # mask: aeroplane + person
    assert image_labels(voc, "2007_000032", VOC_CLASSES) == ([5, 15], "annotations")
    cache = build_label_cache(voc, "train_aug", VOC_CLASSES)
    assert cache["sources"] == {"annotations": 2, "masks": 1}
    assert cache["labels"]["2007_000032"] == [5, 15]


def test_label_cache_round_trip_and_class_name_check(voc, tmp_path):
    cache = build_label_cache(voc, "train_aug", VOC_CLASSES)
    save_label_cache(tmp_path / "labels.json", cache)
    labels = load_label_cache(tmp_path / "labels.json", VOC_CLASSES)
    assert labels == {"2007_000032": [1, 15], "2008_001234": [8], "2011_003276": [12, 15]}
    with pytest.raises(DataError, match="other class names"):
        load_label_cache(tmp_path / "labels.json", VOC_CLASSES[:5])
    np.testing.assert_array_equal(np.nonzero(multi_hot(labels["2007_000032"], 21))[0], [0, 14])


def test_missing_split_missing_mask_and_bad_files_are_named(voc):
    with pytest.raises(DataError, match="test.txt"):
        read_split_ids(voc, "test")
    with pytest.raises(DataError, match="2011_003276"):
        load_mask(voc, "2011_003276")
    (voc / "JPEGImages" / "2007_000032.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="2007_000032.jpg"):
        load_image(voc, "2007_000032")
    (voc / "Annotations" / "2011_003276.xml").write_text(_xml(["unicorn"]))
    with pytest.raises(DataError, match="unicorn"):
        image_labels(voc, "2011_003276", VOC_CLASSES)


def test_out_of_range_class_in_mask_is_an_error(voc):
    save_label_png(voc / "SegmentationClass" / "2007_000032.png", np.full((37, 53), 30, np.uint8))
    with pytest.raises(DataError, match="outside 0..20"):
        image_labels(voc, "2007_000032", VOC_CLASSES)  # no XML for this id: the mask is read
