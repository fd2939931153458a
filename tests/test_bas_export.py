"""Seed export (bas_seed.export) and seed evaluation (bas_seed.evaluate): resolutions, flip/scale sums, class
selection, fusion wiring, the wsss-seed/1 files of the CLI, and the metrics of hand-made seeds."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bas_seed import evaluate as seed_eval
from bas_seed import export
from bas_seed.data import normalize
from bas_seed.fusion import MAXNORM_EPS, fuse_foreground, max_normalize
from bas_seed.model import BASNet, CAMNet
from wsss_common.io import DataError, load_npz, save_npz_atomic, read_json
from wsss_common.metrics import confusion_matrix, scores
from wsss_common.shards import merge_shard_dirs, write_index
from wsss_common.training import save_checkpoint
from wsss_common.voc import load_image, load_label_cache, load_mask

SETTINGS = {"scales": [1.0, 0.5, 1.5, 2.0], "foreground_fusion": "average", "foreground_renormalize": False,
            "fuse_cam": False, "shards": 2,
            "eval_threshold": 0.3, "sweep": {"start": 0.2, "stop": 0.44, "step": 0.04},
            "threshold_search": {"enabled": True, "start": 0.1, "stop": 0.9, "step": 0.1, "ac_weight": 1.0,
                                 "chunk": 0}}


def test_output_sizes_follow_the_reference():
    assert export.strided_size(50, 37) == (13, 10)
    assert export.strided_up_size(50, 37) == (64, 48)
    img = np.zeros((50, 37, 3), np.uint8)
    assert export.rescale_image(img, 0.5).shape == (25, 18, 3)  # round(18.5) = 18 (round half to even)
    assert export.rescale_image(img, 1.5).shape == (75, 56, 3)
    assert export.rescale_image(img, 1.0) is img


@pytest.fixture(scope="module")
def bas_net():
    torch.manual_seed(0)
    return BASNet(num_fg=5, depth=18, class_agnostic=True).eval()


def reference_maps(model, image, scales, channels):
    """Straightforward re-statement: per scale, each of image and flipped image separately, flip undone, summed;
    upsampled to ceil(H/4) and to ceil(H/16)*16 then cropped; summed over scales."""
    h, w = image.shape[:2]
    cam = torch.zeros(len(channels), (h + 3) // 4, (w + 3) // 4)
    high = torch.zeros(len(channels), h, w)
    with torch.no_grad():
        for s in scales:
            x = normalize(export.rescale_image(image, s))
            plain = model.localization_maps(x[None])[0]
            flipped = model.localization_maps(torch.flip(x, dims=[2])[None])[0]
            m = (plain + torch.flip(flipped, dims=[2]))[channels]
            cam += F.interpolate(m[None], ((h + 3) // 4, (w + 3) // 4), mode="bilinear", align_corners=False)[0]
            up = (-(-h // 16) * 16, -(-w // 16) * 16)
            high += F.interpolate(m[None], up, mode="bilinear", align_corners=False)[0, :, :h, :w]
    return cam, high


def test_multiscale_flip_maps_equal_the_straightforward_computation(bas_net):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 58, 3), dtype=np.uint8)
    channels = torch.tensor([1, 3, 5])
    cam, high, x3 = export.multiscale_maps(bas_net, image, [1.0, 0.5, 1.5], channels, "cpu", keep_features=True)
    ref_cam, ref_high = reference_maps(bas_net, image, [1.0, 0.5, 1.5], channels)
    assert cam.shape == (3, 12, 15) and high.shape == (3, 45, 58)
    assert torch.allclose(cam, ref_cam, atol=1e-5) and torch.allclose(high, ref_high, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(x3, bas_net.extract(normalize(image)[None])[0], atol=1e-5)
    # 1.0 not among the scales: the features still come from the unscaled image
    _, _, x3_extra = export.multiscale_maps(bas_net, image, [0.5], channels, "cpu", keep_features=True)
    assert torch.allclose(x3_extra, x3, atol=1e-5)


def test_seed_maps_keep_gt_classes_max_normalise_and_fuse_the_foreground_map(bas_net):
    image = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    settings = dict(SETTINGS, scales=[1.0, 0.5])
    cam, high, _, variants = export.seed_maps(bas_net, image, [2, 4], dict(settings, foreground_fusion="none"),
                                              "cpu", keep_variants=True)
    assert variants == {}  # no fusion: nothing to keep beside the seed
    ref_cam, ref_high = reference_maps(bas_net, image, [1.0, 0.5], torch.tensor([1, 3, 5]))
    assert torch.allclose(high, max_normalize(ref_high[:2]), atol=1e-5)
    assert torch.allclose(cam, max_normalize(ref_cam[:2]), atol=1e-5)
    assert torch.allclose(high.amax(dim=(1, 2)), 1 / (1 + MAXNORM_EPS / ref_high[:2].amax(dim=(1, 2))))
    _, fused, _, variants = export.seed_maps(bas_net, image, [2, 4], settings, "cpu", keep_variants=True)
    norm = max_normalize(ref_high)
    assert torch.allclose(fused, fuse_foreground(norm[:2], norm[2], "average"), atol=1e-5)
    assert list(variants) == ["bas_class_specific"] and torch.allclose(variants["bas_class_specific"], high, atol=1e-6)


def test_foreground_fusion_without_the_agnostic_map_is_a_clear_error():
    torch.manual_seed(0)
    net = CAMNet(num_fg=5, depth=18).eval()
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="class-agnostic"):
        export.seed_maps(net, image, [1], dict(SETTINGS, foreground_fusion="replace"), "cpu")
    cam, high, _, _ = export.seed_maps(net, image, [1, 2], dict(SETTINGS, foreground_fusion="none"), "cpu")
    assert high.shape == (2, 32, 32)


# ---- CLI end to end on the tiny synthetic set ------------------------------------------------------------------

def write_checkpoint(path, model, method):
    config = {"method": method, "depth": 18, "num_fg": model.num_fg, "class_agnostic": model.class_agnostic}
    save_checkpoint(path, model=model.state_dict(), model_config=config, epoch=1, optimizer={})


@pytest.fixture(scope="module")
def exported(tiny_voc, tmp_path_factory, bas_net):
    base = tmp_path_factory.mktemp("seeds")
    write_checkpoint(base / "model.pt", bas_net, "bas")
    torch.manual_seed(1)
    write_checkpoint(base / "cam_model.pt", CAMNet(num_fg=5, depth=18), "cam")
    dirs = []
    for shard in range(2):
        dirs.append(base / f"shard_{shard}")
        export.main(["--voc-root", str(tiny_voc["root"]), "--labels", str(tiny_voc["labels"]),
                     "--model", str(base / "model.pt"), "--settings", json.dumps(SETTINGS),
                     "--out-dir", str(dirs[-1]), "--shard", str(shard), "--num-shards", "2", "--device", "cpu",
                     "--timing", str(base / f"timing_{shard}.json")])
    index = base / "index.json"
    write_index(index, merge_shard_dirs(dirs, ".npz", list(load_label_cache(tiny_voc["labels"]))))
    return {"base": base, "dirs": dirs, "index": index}


def test_export_cli_writes_one_valid_seed_per_image_split_over_shards(tiny_voc, exported):
    labels = load_label_cache(tiny_voc["labels"])
    files = {p.stem: p for d in exported["dirs"] for p in d.glob("*.npz")}
    assert sorted(files) == sorted(labels)
    assert len(list(exported["dirs"][0].glob("*.npz"))) == (len(labels) + 1) // 2
    grid = export.threshold_grid(0.1, 0.9, 0.1)
    for image_id, path in files.items():
        seed = export.load_seed(path)
        raw = load_npz(path)
        h, w = load_image(tiny_voc["root"], image_id).shape[:2]
        assert raw["keys"].tolist() == labels[image_id] and raw["keys"].dtype == np.int64
        assert raw["cam"].dtype == np.float32 and raw["high_res"].dtype == np.float32
        assert seed["high_res"].shape == (len(labels[image_id]), h, w)
        assert seed["image_size"].tolist() == [h, w]
        if labels[image_id]:
            assert np.all(seed["high_res"].max(axis=(1, 2)) <= 1.0) and seed["high_res"].min() >= 0
            assert np.isclose(grid, float(seed["threshold"])).any()
        else:
            assert np.isnan(seed["threshold"])
    timing = read_json(exported["base"] / "timing_0.json")
    assert timing["n_images"] == (len(labels) + 1) // 2 and timing["search_seconds"] > 0


def test_export_cli_rejects_mismatched_cam_fusion_and_unknown_classes(tiny_voc, exported, tmp_path):
    base = exported["base"]
    common = ["--voc-root", str(tiny_voc["root"]), "--model", str(base / "model.pt"), "--out-dir", str(tmp_path),
              "--device", "cpu"]
    with pytest.raises(SystemExit, match="fuse_cam"):
        export.main(common + ["--labels", str(tiny_voc["labels"]), "--settings", json.dumps(SETTINGS),
                              "--cam-model", str(base / "cam_model.pt")])
    cache = read_json(tiny_voc["labels"])
    first = next(iter(cache["labels"]))
    cache["labels"] = {first: [9]}
    bad = tmp_path / "bad_labels.json"
    bad.write_text(json.dumps(cache))
    with pytest.raises(DataError, match="bad_labels.json"):
        export.main(common + ["--labels", str(bad), "--settings", json.dumps(SETTINGS)])
    with pytest.raises(ValueError, match="config key seeds.threshold_search.step"):
        export.main(common + ["--labels", str(tiny_voc["labels"]), "--settings",
                              json.dumps(dict(SETTINGS, threshold_search={"step": "x"}))])


def test_export_with_cam_fusion_wires_each_model_to_its_maps(tiny_voc, exported, tmp_path):
    """fuse_cam: the seed is maxnorm(maxnorm(BAS with its foreground fusion) + maxnorm(CAM)), each model's maps
    computed the straightforward way (reference_maps) from its own checkpoint; the eval-split seeds also keep BAS
    alone (before the CAM fusion) and the class-specific maps (before any fusion) for the seed report."""
    from bas_seed.model import load_model

    base = exported["base"]
    settings = dict(SETTINGS, fuse_cam=True, scales=[1.0], threshold_search=dict(SETTINGS["threshold_search"],
                                                                                enabled=False))
    export.main(["--voc-root", str(tiny_voc["root"]), "--labels", str(tiny_voc["labels"]), "--model",
                 str(base / "model.pt"), "--cam-model", str(base / "cam_model.pt"), "--settings",
                 json.dumps(settings), "--out-dir", str(tmp_path), "--shard", "0", "--num-shards", "8",
                 "--eval-labels", str(tiny_voc["label_files"]["train"]), "--device", "cpu"])
    bas, cam = load_model(base / "model.pt"), load_model(base / "cam_model.pt")
    eval_ids = set(load_label_cache(tiny_voc["label_files"]["train"]))
    seeds = {p.stem: export.load_seed(p) for p in tmp_path.glob("*.npz")}
    assert len(seeds) == 2 and all(np.isnan(s["threshold"]) for s in seeds.values())
    checked = 0
    for image_id, seed in seeds.items():
        if not seed["keys"].size:
            continue
        image = load_image(tiny_voc["root"], image_id)
        channels = torch.tensor([k - 1 for k in seed["keys"]])
        _, b_high = reference_maps(bas, image, [1.0], torch.cat([channels, torch.tensor([bas.num_fg])]))
        _, c_high = reference_maps(cam, image, [1.0], channels)
        b_norm = max_normalize(b_high)
        bas_alone = fuse_foreground(b_norm[:-1], b_norm[-1], "average")
        expected = max_normalize(max_normalize(bas_alone) + max_normalize(max_normalize(c_high)))
        assert torch.allclose(torch.from_numpy(seed["high_res"]), expected, atol=1e-5)
        if image_id in eval_ids:
            assert np.allclose(seed["variant_bas_foreground"], bas_alone.numpy(), atol=1e-5)
            assert np.allclose(seed["variant_bas_class_specific"], b_norm[:-1].numpy(), atol=1e-5)
        else:
            assert not any(k.startswith("variant_") for k in seed)
        checked += 1
    assert checked


def test_evaluate_cli_writes_the_sweep_fixed_and_image_specific_numbers(tiny_voc, exported, tmp_path):
    out = tmp_path / "seed_miou.json"
    eval_labels = tiny_voc["label_files"]["train"]
    seed_eval.main(["--voc-root", str(tiny_voc["root"]), "--index", str(exported["index"]), "--labels",
                    str(eval_labels), "--class-names", json.dumps(tiny_voc["class_names"]), "--settings",
                    json.dumps(SETTINGS), "--out", str(out)])
    m = read_json(out)
    assert m["split"] == "train" and m["n_images"] == len(load_label_cache(eval_labels))
    assert list(m["threshold_sweep"]) == ["0.2", "0.24", "0.28", "0.32", "0.36", "0.4", "0.44"]
    assert m["miou"] == max(m["threshold_sweep"].values())
    assert m["threshold_sweep"][f"{m['best_threshold']:.4g}"] == m["miou"]
    assert m["fixed_threshold"] == 0.3 and m["fixed_threshold_miou"] is not None
    assert m["image_specific_miou"] is not None and set(m["image_specific_per_class"]) == set(m["per_class"])
    assert (tmp_path / "seed_miou.md").is_file()


# ---- evaluation on hand-made seeds -------------------------------------------------------------------------------

def make_seeds(tiny_voc, folder, value_of_gt, threshold, variant=None):
    """Seeds whose map of class k is ``value_of_gt`` on the GT pixels of k and 0.1 elsewhere; ``variant``
    (value on GT, value elsewhere) adds a kept pre-fusion map ``variant_early``."""
    labels = load_label_cache(tiny_voc["label_files"]["train"])
    items = {}
    for image_id, keys in labels.items():
        gt = load_mask(tiny_voc["root"], image_id)
        high = np.stack([np.where(gt == k, value_of_gt, 0.1) for k in keys]).astype(np.float32) if keys else \
            np.zeros((0, *gt.shape), np.float32)
        cam = np.zeros((len(keys), *export.strided_size(*gt.shape)), np.float32)
        items[image_id] = str(folder / f"{image_id}.npz")
        extra = {}
        if variant is not None:
            extra["variant_early"] = np.stack([np.where(gt == k, variant[0], variant[1]) for k in keys]).astype(
                np.float32) if keys else np.zeros((0, *gt.shape), np.float32)
        save_npz_atomic(items[image_id], format=np.asarray("wsss-seed/1"), keys=np.asarray(keys, np.int64),
                        cam=cam, high_res=high, threshold=np.float32(threshold), image_size=np.asarray(gt.shape),
                        **extra)
    return labels, items


def test_seed_metrics_of_hand_made_seeds(tiny_voc, tmp_path):
    labels, index = make_seeds(tiny_voc, tmp_path, 0.9, 0.95)
    names = tiny_voc["class_names"]
    sweep = np.array([0.05, 0.5])
    result = seed_eval.evaluate_seeds(tiny_voc["root"], index, labels, len(names), sweep, fixed_threshold=0.95)
    best, extra = seed_eval.summarize(result, sweep, 0.95, names)
    # threshold 0.5: exactly the GT (void pixels ignored) -> 100; 0.05: every pixel foreground
    assert extra["threshold_sweep"]["0.5"] == 100.0 and best == 1 and extra["best_threshold"] == 0.5
    # 0.95 (fixed and image-specific): everything background
    all_bg = np.zeros((len(names), len(names)), np.int64)
    for image_id in labels:
        gt = load_mask(tiny_voc["root"], image_id)
        all_bg += confusion_matrix(gt, np.zeros_like(gt), len(names))
    expected = scores(all_bg, names)["miou"]
    assert extra["fixed_threshold_miou"] == expected and extra["image_specific_miou"] == expected
    assert extra["image_specific_threshold_mean"] == pytest.approx(0.95, abs=1e-6)
    # object pixels: the best threshold reproduces the GT; the image-specific 0.95 predicts no object at all
    assert extra["object_pixels"] == {"recall": 100.0, "precision": 100.0, "fg_recall": 100.0, "fg_precision": 100.0}
    assert extra["image_specific_object_pixels"]["recall"] == 0.0
    assert extra["image_specific_object_pixels"]["precision"] is None
    # the curve: 0.5 is the best point; at 0.05 every pixel of a labelled image is an object of its best class (the
    # GT's on the GT pixels), so recall is 100 and precision the objects' share of those images' non-void pixels
    curve = extra["object_pixels_sweep"]
    assert list(curve) == ["0.05", "0.5"] and curve["0.5"] == extra["object_pixels"]
    objects = labelled = 0
    for image_id, keys in labels.items():
        gt = load_mask(tiny_voc["root"], image_id)
        if keys:
            objects += int(((gt > 0) & (gt < 255)).sum())
            labelled += int((gt < 255).sum())
    assert curve["0.05"]["recall"] == 100.0 and curve["0.05"]["fg_recall"] == 100.0
    assert curve["0.05"]["fg_precision"] == pytest.approx(100.0 * objects / labelled, abs=1e-3)


def test_variants_get_their_own_sweep_and_a_best_threshold_on_the_edge_is_flagged(tiny_voc, tmp_path):
    """The seed peaks at 0.5 (inside the sweep), the kept pre-fusion map at 0.05 (its first value): each variant
    reports its own best threshold, and the edge is flagged in the metrics and in the warnings."""
    labels, index = make_seeds(tiny_voc, tmp_path, 0.9, 0.95, variant=(0.08, 0.01))
    names = tiny_voc["class_names"]
    sweep = np.array([0.05, 0.5, 0.95])
    result = seed_eval.evaluate_seeds(tiny_voc["root"], index, labels, len(names), sweep, fixed_threshold=0.95)
    _, extra = seed_eval.summarize(result, sweep, 0.95, names)
    assert extra["best_threshold"] == 0.5 and extra["best_threshold_on_edge"] is False
    early = extra["variants"]["early"]
    assert early["miou"] == 100.0 and early["best_threshold"] == 0.05 and early["on_edge"] is True
    assert early["threshold_sweep"]["0.5"] < 100.0
    warnings = seed_eval.edge_warnings(extra)
    assert len(warnings) == 1 and "variant early" in warnings[0] and "0.05" in warnings[0]


def test_seed_label_map_maps_indices_through_keys_and_ties_to_background():
    high = np.array([[[0.5, 0.2, 0.3]], [[0.4, 0.6, 0.3]]], np.float32)
    assert seed_eval.seed_label_map(high, np.array([3, 7]), 0.3).tolist() == [[3, 7, 0]]


def test_evaluation_errors_name_the_file_or_the_ids(tiny_voc, tmp_path):
    labels, index = make_seeds(tiny_voc, tmp_path, 0.9, 0.5)
    names = tiny_voc["class_names"]
    broken = tmp_path / "broken.npz"
    save_npz_atomic(broken, format=np.asarray("something-else"), keys=np.zeros(0, np.int64))
    first = next(iter(labels))
    with pytest.raises(DataError, match="broken.npz"):
        seed_eval.evaluate_seeds(tiny_voc["root"], dict(index, **{first: str(broken)}), labels, len(names),
                                 np.array([0.3]), 0.3)
    with pytest.raises(DataError, match="no seed in the index"):
        seed_eval.evaluate_seeds(tiny_voc["root"], {}, labels, len(names), np.array([0.3]), 0.3)


def test_search_labels_restrict_the_search_to_those_ids(tiny_voc, exported, tmp_path):
    eval_ids = set(load_label_cache(tiny_voc["label_files"]["train"]))
    settings = dict(SETTINGS, scales=[1.0], threshold_search=dict(SETTINGS["threshold_search"], scope="eval_split"))
    export.main(["--voc-root", str(tiny_voc["root"]), "--labels", str(tiny_voc["labels"]), "--model",
                 str(exported["base"] / "model.pt"), "--settings", json.dumps(settings), "--out-dir", str(tmp_path),
                 "--eval-labels", str(tiny_voc["label_files"]["train"]), "--shard", "1", "--num-shards", "3",
                 "--device", "cpu"])
    seeds = {p.stem: export.load_seed(p) for p in tmp_path.glob("*.npz")}
    assert seeds and any(i in eval_ids for i in seeds) and any(i not in eval_ids for i in seeds)
    for image_id, seed in seeds.items():
        assert np.isnan(seed["threshold"]) == (image_id not in eval_ids or seed["keys"].size == 0)
