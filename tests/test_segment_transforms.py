"""The training augmentation of the segment stage against deeplab-pytorch's ``_BaseDataset._augmentation``: the
random scale truncates the size (int, not round), the image is resized with cv2 INTER_LINEAR and the label with PIL
NEAREST (not cv2 nearest), then padding (mean / 255), random crop and random flip, in that order."""
import random

import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mmseg")

from mmengine.dataset import Compose  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import segment.registry_modules  # noqa: E402,F401
from segment.settings import build_mmseg_config, load_settings  # noqa: E402
from segment.transforms import DeepLabPadToCrop, DeepLabRandomScale, resize_label_pil_nearest  # noqa: E402

register_all_modules(init_default_scope=True)
MEAN_BGR = (104.008, 116.669, 122.675)


def _results(img, label):
    return {"img": img, "img_shape": img.shape[:2], "ori_shape": img.shape[:2], "gt_seg_map": label,
            "seg_fields": ["gt_seg_map"]}


def test_random_scale_truncates_the_size():
    # 9 x 11 at 0.75: int(6.75), int(8.25) = 6, 8; rounding (mmcv Resize) would give 7, 8
    img = np.random.default_rng(0).uniform(0, 255, (9, 11, 3)).astype(np.float32)
    out = DeepLabRandomScale(scales=[0.75]).transform(_results(img, np.zeros((9, 11), np.uint8)))
    assert out["img"].shape == (6, 8, 3) and out["gt_seg_map"].shape == (6, 8)
    assert out["img_shape"] == (6, 8) and out["scale"] == (8, 6)
    # 1.5: 13.5 -> 13, 16.5 -> 16 (rounding: 14, 17)
    out = DeepLabRandomScale(scales=[1.5]).transform(_results(img, np.zeros((9, 11), np.uint8)))
    assert out["img"].shape[:2] == (13, 16)


def test_random_scale_draws_with_pythons_random_choice():
    scales = [0.5, 0.75, 1.0, 1.25, 1.5]
    img = np.zeros((40, 40, 3), np.float32)
    for seed in range(6):
        random.seed(seed)
        out = DeepLabRandomScale(scales=scales).transform(_results(img, np.zeros((40, 40), np.uint8)))
        expected = random.Random(seed).choice(scales)
        assert out["img"].shape[0] == int(40 * expected), seed


def test_label_resize_is_pil_nearest_not_cv2_nearest():
    label = (10 * np.arange(8)[:, None] + np.arange(8)[None, :]).astype(np.uint8)  # 8 x 8, every value distinct
    # 8 -> 6 with PIL NEAREST picks rows/columns 0 2 3 4 5 7 (cv2 INTER_NEAREST picks 0 1 2 4 5 6)
    expected = np.array([[0, 2, 3, 4, 5, 7],
                         [20, 22, 23, 24, 25, 27],
                         [30, 32, 33, 34, 35, 37],
                         [40, 42, 43, 44, 45, 47],
                         [50, 52, 53, 54, 55, 57],
                         [70, 72, 73, 74, 75, 77]], np.uint8)
    out = DeepLabRandomScale(scales=[0.75]).transform(_results(np.zeros((8, 8, 3), np.float32), label))
    assert out["gt_seg_map"].dtype == np.uint8
    assert np.array_equal(out["gt_seg_map"], expected)
    assert not np.array_equal(cv2.resize(label, (6, 6), interpolation=cv2.INTER_NEAREST), expected)
    # the helper equals PIL itself on random labels and non-square, up- and downscaled sizes
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 21, (17, 23)).astype(np.uint8)
    for h, w in ((12, 17), (25, 34), (8, 11)):
        ref = np.asarray(Image.fromarray(lab).resize((w, h), resample=Image.NEAREST))
        assert np.array_equal(resize_label_pil_nearest(lab, h, w), ref)


def test_image_resize_is_cv2_linear():
    img = np.random.default_rng(2).uniform(0, 255, (9, 11, 3)).astype(np.float32)
    out = DeepLabRandomScale(scales=[0.75]).transform(_results(img.copy(), np.zeros((9, 11), np.uint8)))
    assert np.array_equal(out["img"], cv2.resize(img, (8, 6), interpolation=cv2.INTER_LINEAR))


def test_pad_to_crop_with_mean_and_ignore():
    img = np.full((5, 7, 3), 9.0, np.float32)
    label = np.ones((5, 7), np.uint8)
    out = DeepLabPadToCrop(crop_size=6, img_pad=MEAN_BGR).transform(_results(img, label))
    assert out["img"].shape == (6, 7, 3) and out["gt_seg_map"].shape == (6, 7)  # only the short side is padded
    assert np.array_equal(out["img"][5], np.broadcast_to(np.float32(MEAN_BGR), (7, 3)))
    assert (out["img"][:5] == 9).all() and (out["gt_seg_map"][5] == 255).all() and (out["gt_seg_map"][:5] == 1).all()


def _reference_augmentation(image, label, scale, crop, flip):
    """deeplab-pytorch's _augmentation with its random draws fixed: scale, pad (mean / 255), crop at 0, flip."""
    h, w = label.shape
    h, w = int(h * scale), int(w * scale)
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    label = np.asarray(Image.fromarray(label).resize((w, h), resample=Image.NEAREST), dtype=np.int64)
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=MEAN_BGR)
    label = cv2.copyMakeBorder(label.astype(np.int32), 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=255)
    image, label = image[:crop, :crop], label[:crop, :crop]
    if flip:
        image, label = np.fliplr(image).copy(), np.fliplr(label).copy()
    return image, label


def test_configured_train_pipeline_equals_the_reference_augmentation(tmp_path):
    """The whole train pipeline the stage builds (load, scale, pad, crop, flip, pack) gives exactly the reference's
    augmented pair, flipped or not: the crop is larger than the scaled image, so the crop offset is 0 and the only
    random draws left are the scale (one candidate) and the flip; a flipped sample has its padding on the left."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    label = rng.integers(0, 3, (9, 11)).astype(np.uint8)
    label[0, :3] = 255
    cv2.imwrite(str(tmp_path / "x.png"), image)  # BGR on disk, as cv2.imread gives it back
    Image.fromarray(label).save(tmp_path / "x_label.png")
    settings = load_settings({"backbone_depth": 18, "backbone_base_channels": 4, "crop_size": 8,
                              "train_scales": [0.75], "model_config": "configs/segment/deeplabv2_r101_msc.py"})
    cfg = build_mmseg_config(settings, voc_root=tmp_path, index_file=tmp_path / "index.json",
                             class_names=["background", "a", "b"], work_dir=tmp_path / "wd")
    pipeline = Compose(cfg.train_pipeline)
    flips = set()
    for seed in range(8):
        random.seed(seed)
        np.random.seed(seed)
        out = pipeline({"img_path": str(tmp_path / "x.png"), "seg_map_path": str(tmp_path / "x_label.png"),
                        "reduce_zero_label": False, "seg_fields": [], "label_map": None})
        flipped = bool(out["data_samples"].flip)
        flips.add(flipped)
        ref_img, ref_label = _reference_augmentation(image.astype(np.float32), label, 0.75, 8, flipped)
        got_img = out["inputs"].permute(1, 2, 0).numpy()
        got_label = out["data_samples"].gt_sem_seg.data[0].numpy()
        assert got_img.shape == (8, 8, 3) and got_label.shape == (8, 8)
        assert np.allclose(got_img, ref_img, atol=1e-4), seed
        assert np.array_equal(got_label, ref_label), seed
    assert flips == {False, True}


def test_stage_fills_scales_and_pad_from_settings(tmp_path):
    settings = load_settings({"crop_size": 65, "train_scales": [0.5, 2.0]})
    cfg = build_mmseg_config(settings, voc_root=tmp_path, index_file=tmp_path / "index.json",
                             class_names=["background", "a"], work_dir=tmp_path / "wd")
    steps = {s["type"]: s for s in cfg.train_pipeline}
    assert steps["DeepLabRandomScale"]["scales"] == [0.5, 2.0]
    assert tuple(steps["DeepLabPadToCrop"]["crop_size"]) == (65, 65)
    assert list(steps["DeepLabPadToCrop"]["img_pad"]) == list(cfg.model.data_preprocessor.mean)
    assert [s["type"] for s in cfg.train_pipeline] == ["LoadImageFromFile", "LoadAnnotations", "DeepLabRandomScale",
                                                       "DeepLabPadToCrop", "RandomCrop", "RandomFlip", "PackSegInputs"]
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline


def test_config_without_the_scale_step_is_refused_naming_key_and_file(tmp_path):
    from segment.settings import REPO_ROOT

    base = REPO_ROOT / "configs" / "segment" / "deeplabv2_r101_msc.py"
    bad = tmp_path / "no_scale.py"
    bad.write_text(f"_base_ = [{str(base)!r}]\n"
                   "train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),\n"
                   "                  dict(type='DeepLabPadToCrop'), dict(type='PackSegInputs')]\n")
    settings = load_settings({"model_config": str(bad)})
    with pytest.raises(ValueError, match="segment.train_scales.*no_scale.py.*DeepLabRandomScale"):
        build_mmseg_config(settings, voc_root=tmp_path, index_file=tmp_path / "index.json",
                           class_names=["background", "a"], work_dir=tmp_path / "wd")
