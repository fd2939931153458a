import json

import numpy as np
import pytest

from wsss_common.metrics import confusion_matrix, iou_from_confusion, scores, write_metrics


def test_confusion_matrix_hand_computed_ignores_255_in_gt():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 255]])  # predicted 255 counts as background, as in IRN
    conf = confusion_matrix(gt, pred, 3)
    expected = np.array([[1, 1, 0],   # gt 0: pred 0, pred 1
                         [1, 2, 0],   # gt 1: pred 1, pred 1, pred 255 -> 0
                         [1, 0, 1]])  # gt 2: pred 2, pred 0; the gt-255 pixel is skipped
    np.testing.assert_array_equal(conf, expected)


def test_iou_and_miou_by_hand_with_absent_class_excluded():
    conf = np.array([[3, 1, 0, 0],
                     [1, 2, 0, 0],
                     [0, 0, 0, 0],    # class 2 absent from gt and prediction -> NaN, not 0
                     [0, 0, 0, 4]])
    iou = iou_from_confusion(conf)
    np.testing.assert_allclose(iou[[0, 1, 3]], [3 / 5, 2 / 4, 1.0])
    assert np.isnan(iou[2])
    s = scores(conf, ["bg", "a", "b", "c"])
    assert s["miou"] == pytest.approx(100 * (0.6 + 0.5 + 1.0) / 3, abs=1e-3)
    assert s["per_class"]["b"] is None
    # IRN's FP/FN for background: FP = 1 - GT/union = 1 - 4/5, FN = 1 - Pred/union = 1 - 4/5
    assert s["bg_fp"] == pytest.approx(20.0) and s["bg_fn"] == pytest.approx(20.0)


def test_class_predicted_but_absent_from_gt_has_zero_iou():
    conf = confusion_matrix(np.zeros((2, 2), int), np.array([[0, 1], [0, 0]]), 2)
    assert iou_from_confusion(conf)[1] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)


def test_write_metrics_json_and_markdown(tmp_path):
    conf = np.array([[5, 1], [0, 4]])
    m = write_metrics(tmp_path / "metrics" / "seed_miou.json", conf=conf, class_names=["background", "cat"],
                      split="train", n_images=2, extra={"threshold": 0.25})
    on_disk = json.loads((tmp_path / "metrics" / "seed_miou.json").read_text())
    assert on_disk == m
    assert set(on_disk) >= {"miou", "per_class", "split", "n_images", "threshold"}
    assert on_disk["per_class"]["cat"] == pytest.approx(80.0)
    md = (tmp_path / "metrics" / "seed_miou.md").read_text()
    assert "| cat | 80.00 |" in md and "threshold" in md


def test_object_pixel_recall_and_precision_by_hand():
    from wsss_common.metrics import object_pixels

    # rows GT (bg, cat, dog), columns prediction
    conf = np.array([[50, 5, 5],     # 10 background pixels predicted as objects
                     [10, 20, 10],   # cat: 20 right, 10 called dog, 10 missed
                     [0, 0, 20]])    # dog: all right
    m = object_pixels(conf)
    assert m["recall"] == pytest.approx(100 * 40 / 60)       # own class over object GT pixels
    assert m["precision"] == pytest.approx(100 * 40 / 60)    # own class over pixels predicted as objects (5+30+25)
    assert m["fg_recall"] == pytest.approx(100 * 50 / 60)    # cat-called-dog still covers an object
    assert m["fg_precision"] == pytest.approx(100 * 50 / 60)
    assert object_pixels(np.array([[5, 0], [0, 0]]))["recall"] is None   # no object pixels: undefined
