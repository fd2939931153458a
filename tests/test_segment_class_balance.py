"""segment.class_balance (config key segment.class_weight): median frequency weights on hand-counted masks, the
weights reaching the mmseg decode loss as a weighted mean over non-ignored pixels, and bad inputs."""
import math

import numpy as np
import pytest

from segment.class_balance import class_pixel_counts, median_frequency_weights, resolve_class_weight
from wsss_common.io import save_label_png
from wsss_common.shards import merge_shard_dirs, write_index


def _two_masks():
    """A: 12 background + 4 class-1 pixels. B: 6 background, 8 class-2, 2 ignored (14 labelled)."""
    a = np.zeros((4, 4), np.uint8)
    a[0] = 1
    b = np.full((4, 4), 2, np.uint8)
    b[2:] = 0
    b[3, :2] = 255
    return a, b


def test_median_frequency_weights_by_hand():
    # pixels: bg 18, c1 4, c2 8; pixels of the images holding them: bg 16 + 14 = 30, c1 16, c2 14 (ignored excluded)
    # f = 3/5, 1/4, 4/7; median 4/7 -> w = (4/7)/(3/5) = 20/21, (4/7)/(1/4) = 16/7, 1
    pixels, image_pixels = class_pixel_counts(_two_masks(), 3)
    assert pixels.tolist() == [18, 4, 8] and image_pixels.tolist() == [30, 16, 14]
    np.testing.assert_allclose(median_frequency_weights(pixels, image_pixels), [20 / 21, 16 / 7, 1.0])


def test_a_class_absent_from_every_mask_weighs_one_and_stays_out_of_the_median():
    pixels, image_pixels = class_pixel_counts(_two_masks(), 4)
    np.testing.assert_allclose(median_frequency_weights(pixels, image_pixels), [20 / 21, 16 / 7, 1.0, 1.0])


def test_resolve_reads_the_masks_of_the_index_and_checks_lists(tmp_path):
    for name, mask in zip("ab", _two_masks()):
        save_label_png(tmp_path / "m" / f"{name}.png", mask)
    write_index(tmp_path / "index.json", merge_shard_dirs([tmp_path / "m"], ".png"))
    np.testing.assert_allclose(resolve_class_weight("median_frequency", tmp_path / "index.json", 3),
                               [20 / 21, 16 / 7, 1.0], rtol=1e-5)
    assert resolve_class_weight(None, tmp_path / "index.json", 3) is None
    assert resolve_class_weight([1, 2, 3], tmp_path / "index.json", 3) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="segment.class_weight lists 2 weights for 3 classes"):
        resolve_class_weight([1, 2], tmp_path / "index.json", 3)
    with pytest.raises(ValueError, match=r"index.json: mask label 2 is not a class id \(0..1\)"):
        resolve_class_weight("median_frequency", tmp_path / "index.json", 2)


def test_the_schema_refuses_an_unknown_method():
    from segment.settings import load_settings

    assert load_settings({})["class_weight"] is None  # the reference: unweighted
    assert load_settings({"class_weight": "median_frequency"})["class_weight"] == "median_frequency"
    with pytest.raises(ValueError, match="segment.class_weight"):
        load_settings({"class_weight": "inverse"})


def test_the_weights_reach_the_decode_loss_as_a_weighted_mean_over_labelled_pixels(tiny_voc, tmp_path):
    """Three pixels: label 0 at logits (0, 0) (CE ln 2), label 1 at (0, ln 3) (CE ln 4/3), one ignored. With weights
    (1, 3) the loss is (ln 2 + 3 ln 4/3) / 4; unweighted it would be (ln 2 + ln 4/3) / 2, and counting the ignored
    pixel in the divisor would give a smaller value."""
    pytest.importorskip("mmseg")
    import torch
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from segment.settings import build_mmseg_config, load_settings

    register_all_modules(init_default_scope=True)
    settings = load_settings({"model_config": "configs/segment/deeplabv2_r101.py", "crop_size": 33})
    cfg = build_mmseg_config(settings, voc_root=tiny_voc["root"], index_file=tmp_path / "index.json",
                             class_names=["background", "thing"], work_dir=tmp_path, class_weight=[1.0, 3.0])
    loss = MODELS.build(cfg.model.decode_head.loss_decode)
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)], [5.0, 0.0]]).T.reshape(1, 2, 1, 3)
    label = torch.tensor([[[0, 1, 255]]])
    value = float(loss(logits, label, ignore_index=255))
    assert value == pytest.approx((math.log(2) + 3 * math.log(4 / 3)) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="segment.class_weight cannot be applied: 3 weights for 2 classes"):
        build_mmseg_config(settings, voc_root=tiny_voc["root"], index_file=tmp_path / "index.json",
                           class_names=["background", "thing"], work_dir=tmp_path, class_weight=[1.0, 3.0, 1.0])
