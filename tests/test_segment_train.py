"""segment.train / segment.predict on a tiny synthetic VOC set: one train and one predict step of the mmseg model,
a trained model that follows pseudo masks differing from the ground truth, resume of an interrupted run to the
identical result (weights_only loads, no fallback), init from a deeplab-pytorch-format file, the predict CLI with CRF,
the settings loader, and clear errors on bad input."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("mmseg")

from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402

from segment.settings import load_settings  # noqa: E402
from segment.train import train  # noqa: E402
from wsss_common.io import DataError, load_label_png, save_label_png  # noqa: E402
from wsss_common.shards import merge_shard_dirs, write_index  # noqa: E402
from wsss_common.voc import load_image, load_mask, mask_path, read_split_ids  # noqa: E402

TINY = {"model_config": "configs/segment/deeplabv2_msc_scratch.py", "backbone_depth": 18,
        "backbone_base_channels": 4, "crop_size": 33, "batch_size": 2, "accumulation_steps": 2, "iterations": 2,
        "checkpoint_interval": 1, "log_interval": 1, "num_workers": 0, "lr": 0.01,
        "predict": {"crf": {"enabled": False}}}


def _write_pseudo_index(tiny_voc, base, make_mask):
    """A wsss-index/1 of pseudo masks ``make_mask(image_id, gt)`` for the train_aug ids that have a GT mask."""
    root = tiny_voc["root"]
    for image_id in read_split_ids(root, "train_aug"):
        if mask_path(root, image_id) is not None:
            save_label_png(base / "shard_0" / f"{image_id}.png", make_mask(image_id, load_mask(root, image_id)))
    write_index(base / "index.json", merge_shard_dirs([base / "shard_0"], ".png"))
    return base / "index.json"


@pytest.fixture(scope="module")
def pseudo_index(tiny_voc, tmp_path_factory):
    """A pseudo-mask index of the train_aug ids that have a mask: their GT with the class ids shifted, so no pseudo
    mask equals its GT (what a test trains on is never the ground truth)."""
    n = len(tiny_voc["class_names"])

    def shifted_classes(image_id, gt):  # every class id one up (the last one to background), 255 kept
        return np.where(gt == 255, 255, (gt.astype(np.int64) + 1) % n).astype(np.uint8)

    return _write_pseudo_index(tiny_voc, tmp_path_factory.mktemp("pseudo"), shifted_classes)


class _Interrupted(Exception):
    pass


@HOOKS.register_module(force=True)
class InterruptAfterIter(Hook):
    """Simulates a killed job right after runner iteration ``at`` (after the checkpoint hook ran)."""
    priority = "LOWEST"

    def __init__(self, at: int):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise _Interrupted(f"interrupted after iteration {self.at}")


def _run(tiny_voc, index, work_dir, out, settings=None, **kw):
    return train(voc_root=str(tiny_voc["root"]), pseudo_masks=str(index), class_names=tiny_voc["class_names"],
                 settings=load_settings(settings or TINY), work_dir=work_dir, out=out, **kw)


def test_one_train_step_and_one_predict_step(tiny_voc, pseudo_index, tmp_path):
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import DATASETS, MODELS
    from mmseg.utils import register_all_modules

    import segment.registry_modules  # noqa: F401
    from segment.settings import build_mmseg_config

    register_all_modules(init_default_scope=True)
    cfg = build_mmseg_config(load_settings(TINY), voc_root=tiny_voc["root"], index_file=pseudo_index,
                             class_names=tiny_voc["class_names"], work_dir=tmp_path)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert all("SegmentationClass" not in d["seg_map_path"] for d in dataset.data_list)  # pseudo masks only
    model = MODELS.build(cfg.model)
    model.init_weights()
    wrapper = build_optim_wrapper(model, dict(cfg.optim_wrapper, accumulative_counts=1))
    before = model.decode_head.aspp[0].weight.detach().clone()
    model.train()
    log = model.train_step(pseudo_collate([dataset[0], dataset[1]]), wrapper)
    assert np.isfinite(float(log["loss"])) and "decode.loss_ce_max" in log
    assert max(dataset[0]["inputs"].shape[1:]) <= 33  # crop (the preprocessor pads smaller ones to 33)
    assert not torch.equal(before, model.decode_head.aspp[0].weight)
    model.eval()
    rgb = load_image(tiny_voc["root"], read_split_ids(tiny_voc["root"], "val")[0])
    from segment.inference import class_probabilities, image_to_input

    probs = class_probabilities(model, image_to_input(rgb, model, "cpu"), scales=(1.0, 0.75), flip=True)
    assert probs.shape == (len(tiny_voc["class_names"]), *rgb.shape[:2])
    assert np.allclose(probs.sum(0), 1.0, atol=1e-4)


def test_training_follows_the_pseudo_masks_not_the_ground_truth(tiny_voc, tmp_path):
    """Pseudo masks that disagree with the GT on most pixels (every pixel one foreground class, which covers little
    of the GT): after a few updates the trained model predicts that class almost everywhere on the training images,
    which a model fitted to the GT (mostly background there) would not."""
    from segment.inference import class_probabilities, image_to_input, load_trained_model

    root = tiny_voc["root"]
    ids = [i for i in read_split_ids(root, "train_aug") if mask_path(root, i) is not None]
    gts = [load_mask(root, i) for i in ids]
    pixels = np.concatenate([g[g != 255] for g in gts])
    share = np.bincount(pixels, minlength=len(tiny_voc["class_names"])) / pixels.size
    target = int(np.argmin(share[1:])) + 1  # the foreground class the GT has least of
    assert share[target] < 0.2 and share[0] > 0.4  # the GT says mostly background and rarely `target`
    index = _write_pseudo_index(tiny_voc, tmp_path / "pseudo", lambda i, gt: np.full(gt.shape, target, np.uint8))

    settings = dict(TINY, iterations=4, accumulation_steps=1, lr=0.02, checkpoint_interval=100)
    _run(tiny_voc, index, tmp_path / "wd", tmp_path / "model.pth", settings=settings)
    model = load_trained_model(tmp_path / "model.pth", "cpu")
    predicted = np.concatenate([class_probabilities(model, image_to_input(load_image(root, i), model, "cpu"))
                                .argmax(0).ravel() for i in ids[:6]])
    follows_pseudo = float((predicted == target).mean())
    follows_gt = float(np.mean(predicted == np.concatenate([g.ravel() for g in gts[:6]])))
    assert follows_pseudo > 0.9, follows_pseudo
    assert follows_gt < 0.3, follows_gt


def test_the_work_dir_keeps_only_the_last_two_checkpoints(tiny_voc, pseudo_index, tmp_path):
    """The model config's ``max_keep_ckpts=2``: without it a VOC run keeps one 350 MB file per interval. Resume needs
    only the last; the one before it stays whole while mmengine writes the next (it deletes before it saves)."""
    settings = dict(TINY, iterations=4, accumulation_steps=1, checkpoint_interval=1)
    _run(tiny_voc, pseudo_index, tmp_path / "wd", tmp_path / "model.pth", settings=settings)
    assert sorted(p.name for p in (tmp_path / "wd").glob("iter_*.pth")) == ["iter_3.pth", "iter_4.pth"]
    assert (tmp_path / "wd" / "last_checkpoint").read_text().strip().endswith("iter_4.pth")


def test_resume_of_an_interrupted_run_gives_the_same_model(tiny_voc, pseudo_index, tmp_path, monkeypatch):
    full = _run(tiny_voc, pseudo_index, tmp_path / "full", tmp_path / "full.pth")
    assert full["runner_iterations"] == 4 and full["init"]["name"] == "scratch"

    with pytest.raises(_Interrupted):
        _run(tiny_voc, pseudo_index, tmp_path / "cut", tmp_path / "cut.pth",
             extra_hooks=[dict(type="InterruptAfterIter", at=2)])
    assert (tmp_path / "cut" / "iter_2.pth").is_file() and not (tmp_path / "cut.pth").exists()

    loads = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    resumed = _run(tiny_voc, pseudo_index, tmp_path / "cut", tmp_path / "cut.pth", resume=True)
    monkeypatch.undo()
    assert resumed["resumed_from"].endswith("iter_2.pth") and resumed["runner_iterations"] == 4
    assert loads and False not in loads  # the checkpoint loaded with weights_only=True, no fallback
    a = real_load(tmp_path / "full.pth", weights_only=True)["state_dict"]
    b = real_load(tmp_path / "cut.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k

    # other settings: --resume does not continue the old run but starts afresh
    changed = dict(TINY, seed=1)
    fresh = _run(tiny_voc, pseudo_index, tmp_path / "cut", tmp_path / "cut.pth", settings=changed, resume=True)
    assert fresh["resumed_from"] is None


def test_init_from_deeplab_pytorch_file_is_recorded(tiny_voc, pseudo_index, tmp_path):
    from test_segment_model import KazutoDeepLabV2

    kazuto = KazutoDeepLabV2(21, [3, 4, 6, 3], 4)  # COCO/VOC-sized head: skipped, as the reference does
    torch.save({f"base.{k}": v for k, v in kazuto.state_dict().items()}, tmp_path / "init.pth")
    settings = dict(TINY, model_config="configs/segment/deeplabv2_r101.py", backbone_depth=50, iterations=1,
                    accumulation_steps=1, init={"checkpoint": str(tmp_path / "init.pth"), "name": "fake-kazuto"})
    summary = _run(tiny_voc, pseudo_index, tmp_path / "wd", tmp_path / "model.pth", settings=settings)
    record = json.loads((tmp_path / "model.json").read_text())["init"]
    assert record["name"] == "fake-kazuto" and record["head_tensors_skipped"] == 8
    assert record["backbone_tensors"] > 100 and len(record["sha256"]) == 64 and summary["init"] == record
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["segmenter_init"] == "fake-kazuto" and card["segmenter_init_sha256"] == record["sha256"]
    # frozen-BN config from scratch is refused with a message naming the key
    with pytest.raises(ValueError, match="segment.init.checkpoint"):
        _run(tiny_voc, pseudo_index, tmp_path / "wd2", tmp_path / "m2.pth",
             settings=dict(settings, init={"checkpoint": None}))


def test_predict_cli_writes_one_png_per_val_id_of_the_shard(tiny_voc, pseudo_index, tmp_path):
    from segment.predict import main as predict_main

    settings = dict(TINY, iterations=1, accumulation_steps=1,
                    predict={"crf": {"enabled": True}, "flip": True})
    _run(tiny_voc, pseudo_index, tmp_path / "wd", tmp_path / "model.pth", settings=settings)
    root = tiny_voc["root"]
    predict_main(["--model", str(tmp_path / "model.pth"), "--voc-root", str(root), "--split", "val",
                  "--settings", json.dumps(settings), "--out-dir", str(tmp_path / "shard_1"), "--shard", "1",
                  "--num-shards", "2", "--device", "cpu"])
    ids = read_split_ids(root, "val")[1::2]
    written = sorted(p.stem for p in (tmp_path / "shard_1").glob("*.png"))
    assert written == sorted(ids)
    for image_id in ids:
        pred = load_label_png(tmp_path / "shard_1" / f"{image_id}.png")
        assert pred.shape == load_image(root, image_id).shape[:2]
        assert pred.max() < len(tiny_voc["class_names"])


def test_crf_keeps_a_confident_map_and_cleans_noise():
    from segment.inference import dense_crf

    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:, 10:] = 255
    probs = np.full((2, 20, 20), 0.4, np.float32)
    probs[0, :, :10], probs[1, :, 10:] = 0.6, 0.6
    probs[1, :, :10], probs[0, :, 10:] = 0.4, 0.4
    probs[:, 5, 5] = (0.45, 0.55)  # one noisy pixel inside the left (class 0) region
    out = dense_crf(rgb, probs).argmax(0)
    assert (out[:, :10] == 0).all() and (out[:, 10:] == 1).all()


def test_bad_inputs_name_the_file_or_key(tiny_voc, pseudo_index, tmp_path):
    index = json.loads(pseudo_index.read_text())
    first = next(iter(index["items"]))
    index["items"][first] = str(tmp_path / "gone.png")
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="gone.png"):
        _run(tiny_voc, tmp_path / "index.json", tmp_path / "wd", tmp_path / "m.pth")
    with pytest.raises(ValueError, match="segment.crop_size"):
        load_settings({"crop_size": "big"})
    with pytest.raises(ValueError, match="segment.predict"):
        load_settings({"predict": {"crf": {"enabled": True, "sxy": 3}}})


def test_load_settings_is_the_projects_section_loader():
    from wsss_common.config import ConfigError, load_section

    with pytest.raises(ConfigError, match=r"config key segment\.crop_size: 'big' is not of type 'integer'"):
        load_settings('{"crop_size": "big"}')
    with pytest.raises(ConfigError, match=r"config key segment\.predict\.crf"):
        load_settings({"predict": {"crf": {"sxy": 3}}})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings("{crop_size: 3")
    filled = load_settings({"crop_size": 65})
    assert filled == load_section("segment", {"crop_size": 65})
    assert filled["crop_size"] == 65 and filled["iterations"] == 20000 and filled["predict"]["crf"]["enabled"]
    assert filled["train_scales"] == [0.5, 0.75, 1.0, 1.25, 1.5]


def _bas_checkpoint(path, depth=18, seed=0):
    """A bas_seed-format checkpoint of a random BAS network (stem.0/stem.1/layer1..4 plus its heads)."""
    from bas_seed.model import BASNet, model_config_of

    torch.manual_seed(seed)
    net = BASNet(num_fg=2, depth=depth)
    for m in net.modules():  # BN statistics other than the init values, so that a skipped buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({"format": "bas-seed-checkpoint", "model": net.state_dict(),
                "model_config": model_config_of(net, depth)}, path)
    return net


def test_bas_state_dict_keys_map_to_the_mmseg_backbone():
    from segment.init_weights import convert_bas_state_dict

    state = {"stem.0.weight": 1, "stem.1.running_var": 2, "layer3.1.conv2.weight": 3,
             "layer2.0.downsample.1.bias": 4, "generator.weight": 5, "classifier.weight": 6}
    converted, unmapped = convert_bas_state_dict(state)
    assert converted == {"backbone.conv1.weight": 1, "backbone.bn1.running_var": 2,
                         "backbone.layer3.1.conv2.weight": 3, "backbone.layer2.0.downsample.1.bias": 4}
    assert unmapped == ["generator.weight", "classifier.weight"]


def test_bas_init_config_pads_with_the_mean_in_the_pipelines_bgr_order():
    from segment.settings import build_mmseg_config

    settings = load_settings(dict(TINY, model_config="configs/segment/deeplabv2_bas_init.py",
                                  backbone_base_channels=64))
    cfg = build_mmseg_config(settings, voc_root="v", index_file="i.json", class_names=["bg", "a", "b"], work_dir="w")
    assert cfg.model.data_preprocessor.bgr_to_rgb and list(cfg.model.data_preprocessor.mean) == [123.675, 116.28,
                                                                                                  103.53]
    pad = next(s for s in cfg.train_pipeline if s["type"] == "DeepLabPadToCrop")["img_pad"]
    assert pad == [103.53, 116.28, 123.675]  # the BGR image is padded with the colour that becomes 0


def test_init_from_bas_loads_every_backbone_tensor_through_the_runner(tiny_voc, pseudo_index, tmp_path):
    net = _bas_checkpoint(tmp_path / "bas.pt")
    settings = dict(TINY, model_config="configs/segment/deeplabv2_bas_init.py", backbone_base_channels=64,
                    iterations=1, accumulation_steps=1, lr=1e-12, init={"from_bas": True, "name": "bas-network"})
    summary = _run(tiny_voc, pseudo_index, tmp_path / "wd", tmp_path / "model.pth", settings=settings,
                   bas_checkpoint=tmp_path / "bas.pt")
    assert summary["init"]["from_bas"] and summary["init"]["checkpoint"] == str(tmp_path / "bas.pt")
    assert summary["init"]["backbone_tensors"] == len([k for k in net.state_dict() if k.startswith(("stem", "layer"))])
    trained = torch.load(tmp_path / "model.pth", weights_only=True)["state_dict"]
    # lr ~0 and frozen BN: after one update the backbone is still the BAS network's, tensor by tensor
    assert torch.allclose(trained["backbone.conv1.weight"], net.stem[0].weight, atol=1e-9)
    assert torch.equal(trained["backbone.bn1.running_var"], net.stem[1].running_var)
    assert torch.allclose(trained["backbone.layer4.1.conv2.weight"], net.layer4[1].conv2.weight, atol=1e-9)
    assert torch.equal(trained["backbone.layer2.0.downsample.1.running_mean"],
                       net.layer2[0].downsample[1].running_mean)
    with pytest.raises(ValueError, match="--bas-checkpoint"):
        _run(tiny_voc, pseudo_index, tmp_path / "wd2", tmp_path / "m2.pth", settings=settings)
    both = dict(settings, init={"from_bas": True, "checkpoint": str(tmp_path / "bas.pt"), "name": "x"})
    with pytest.raises(ValueError, match="exclude each other"):
        _run(tiny_voc, pseudo_index, tmp_path / "wd3", tmp_path / "m3.pth", settings=both,
             bas_checkpoint=tmp_path / "bas.pt")


def test_a_diverged_run_fails_instead_of_exporting_nan_weights(tiny_voc, pseudo_index, tmp_path):
    settings = dict(TINY, iterations=2, accumulation_steps=1, lr=1e36)  # updates at lr 1e36 overflow to inf/NaN
    with pytest.raises(DataError, match="diverged.*segment.lr"):
        _run(tiny_voc, pseudo_index, tmp_path / "wd", tmp_path / "model.pth", settings=settings)
    assert not (tmp_path / "model.pth").exists()


def test_two_runs_in_the_same_second_write_into_their_own_work_dirs(tiny_voc, pseudo_index, tmp_path, monkeypatch):
    """mmengine names its process-wide Visualizer/MMLogger after the config stem and a one-second timestamp; CI once
    failed when a test's Runner got the previous test's Visualizer and wrote its config into that test's work dir. With
    the clock frozen, both runs share the timestamp: each run's config and log must still land in its own work dir."""
    import time
    import types

    import mmengine.runner.runner as runner_module

    frozen = types.SimpleNamespace(time=lambda: 1_800_000_000.0, strftime=time.strftime, localtime=time.localtime,
                                   sleep=time.sleep, perf_counter=time.perf_counter)
    monkeypatch.setattr(runner_module, "time", frozen)
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(1_800_000_000.0))
    for name in ("first", "second"):
        _run(tiny_voc, pseudo_index, tmp_path / name, tmp_path / f"{name}.pth")
    for name in ("first", "second"):
        log_dir = tmp_path / name / stamp
        assert (log_dir / "vis_data" / "config.py").is_file(), name
        assert str(tmp_path / name) in (log_dir / "vis_data" / "config.py").read_text(), name
        assert "Iter(train)" in (log_dir / f"{stamp}.log").read_text(), name


def test_median_frequency_class_weights_come_from_the_pseudo_masks_and_reach_the_run(tiny_voc, pseudo_index,
                                                                                     tmp_path):
    """segment.class_weight: median_frequency weighs the pseudo masks' classes (ids shifted from the GT's: their
    most frequent class is 1, the GT's background), not the ground truth's (where background, 0, would weigh least);
    the weights are recorded in model.json, the card and the exported config's decode loss."""
    settings = dict(TINY, class_weight="median_frequency")
    summary = _run(tiny_voc, pseudo_index, tmp_path / "wd", tmp_path / "model.pth", settings=settings)
    weights = summary["class_weight"]
    assert len(weights) == len(tiny_voc["class_names"])
    assert int(np.argmin(weights)) == 1 and weights[1] < 1.0 and weights[0] > weights[1]
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["segmenter_class_weight"] == "median_frequency"
    config_text = torch.load(tmp_path / "model.pth", weights_only=True)["meta"]["config"]
    assert "class_weight=[" in config_text and "avg_non_ignore=False" in config_text
    unweighted = _run(tiny_voc, pseudo_index, tmp_path / "wd0", tmp_path / "m0.pth")
    assert unweighted["class_weight"] is None
    card = json.loads((tmp_path / "model_card.json").read_text())  # now the card beside m0.pth
    assert card["segmenter_class_weight"] == "none"
