"""IRN stage end to end on the tiny synthetic set: config drafts against the schema, data augmentation,
make_ir_labels, one train_irn run (plus resume), the backbone init and the optimiser, make_pseudo_masks and its
post-processing."""
import json
from pathlib import Path
from unittest import mock

import jsonschema
import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage

import irn.train as irn_train
from irn import make_ir_labels, make_pseudo_masks
from irn.data import augment, random_crop
from irn.make_pseudo_masks import labels_from_walk
from irn.model import IRNet
from wsss_common.config import ConfigError, load_section
from wsss_common.io import DataError, load_label_png, save_npz_atomic, write_json_atomic
from wsss_common.shards import load_index, merge_shard_dirs, write_index
from wsss_common.training import save_checkpoint, set_poly_lr
from wsss_common.voc import load_image, load_label_cache, load_mask

from conftest import epochs_of

ROOT = Path(__file__).resolve().parents[1]


def config_section(name):
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["irn"]


@pytest.fixture(scope="module")
def settings():
    """The test config's section with the backbone from an ImageNet-format file (``imagenet_file``), not from the
    BAS network (init_from_bas has its own test), and the CRF thresholds as numbers (BAS's; test.yaml's ``auto``
    needs the workflow's resolved file, tests/test_irn_thresholds.py and the DAG run cover it)."""
    return load_section("irn", {**config_section("test"), "init_from_bas": False, "fg_threshold": 0.30,
                                "bg_threshold": 0.17})


def torchvision_state(depth: int, seed: int) -> dict:
    """A torchvision ResNet state dict as an ImageNet file holds it (fc included), with seeded random weights and
    non-trivial BN statistics (torchvision's init leaves them at 0 / 1, which a comparison could not tell apart)."""
    import torchvision
    torch.manual_seed(seed)
    state = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    for key in state:
        if key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn_like(state[key])
    return state


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("imagenet") / "resnet18-imagenet.pth"
    state = torchvision_state(18, seed=7)
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("name", ["test", "demo", "voc12"])
def test_shipped_configs_match_schema(name):
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "irn.schema.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    section = config_section(name)
    jsonschema.validate(section, schema, cls=jsonschema.Draft202012Validator)
    defaults = {k: v["default"] for k, v in schema["properties"].items()}
    assert set(section) == set(defaults)
    if name == "voc12":
        assert section == load_section("irn", {})  # every default filled in, nested ones included


def test_random_crop_pads_image_with_0_and_label_with_255():
    image = np.ones((10, 60, 3), np.float32)
    label = np.full((10, 60), 3, np.uint8)
    img, lab = random_crop(image, label, 16, np.random.default_rng(0))
    assert img.shape == (16, 16, 3) and lab.shape == (16, 16)
    rows = np.where(lab[:, 0] == 3)[0]
    assert len(rows) == 10 and np.all(np.diff(rows) == 1)  # the 10 image rows sit together at a random offset
    assert np.all(lab[lab != 3] == 255) and np.all(img[lab == 255] == 0) and np.all(img[lab == 3] == 1)


def test_augment_shapes_and_label_values():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    label = np.zeros((50, 40), np.uint8)
    label[10:30, 5:25] = 2
    img, reduced = augment(image, label, crop=48, scale_range=(0.5, 1.5), rng=rng)
    assert img.shape == (3, 48, 48) and img.dtype == np.float32
    assert reduced.shape == (12, 12) and set(np.unique(reduced)) <= {0, 2, 255}


def test_cached_images_and_ir_labels_give_the_same_samples_from_memory(tiny_voc, tmp_path):
    # irn.cache_images: the same (image, label) samples in every epoch with the JPEGs and label PNGs gone
    import shutil
    from irn.data import IRLabelDataset
    from wsss_common.io import save_label_png

    root = shutil.copytree(tiny_voc["root"], tmp_path / "VOC2012")
    ids = sorted(load_label_cache(tiny_voc["labels"]))[:6]
    rng = np.random.default_rng(0)
    label_paths = {}
    for i in ids:
        label_paths[i] = str(tmp_path / "ir" / f"{i}.png")
        Path(label_paths[i]).parent.mkdir(exist_ok=True)
        save_label_png(label_paths[i], rng.choice([0, 1, 2, 255], size=load_image(root, i).shape[:2]).astype(np.uint8))
    options = dict(crop=32, scale_range=(0.7, 1.3), seed=5)
    disk = IRLabelDataset(root, label_paths, **options)
    kept = IRLabelDataset(root, label_paths, **options, cache_images=True)

    expected = epochs_of(disk)
    shutil.rmtree(root / "JPEGImages")
    shutil.rmtree(tmp_path / "ir")
    got = epochs_of(kept)
    assert all(torch.equal(g[0], e[0]) and torch.equal(g[1], e[1]) for g, e in zip(got, expected))
    assert not torch.equal(got[0][0], got[len(ids)][0])
    with pytest.raises(DataError, match="missing"):
        disk[0]


def seed_maps_from_mask(mask, keys):
    """Seed-like maps: each class's mask blurred (so the CRF and the walk have something to refine)."""
    maps = np.stack([ndimage.gaussian_filter((mask == k).astype(np.float32), 3) for k in keys]) if keys else \
        np.zeros((0, *mask.shape), np.float32)
    return maps / np.maximum(maps.reshape(len(keys), -1).max(1), 1e-5)[:, None, None] if keys else maps


@pytest.fixture(scope="module")
def stage(tiny_voc, tmp_path_factory):
    """Seeds (from the ground truth, blurred) for the first 6 train_aug ids, written as wsss-seed/1 files."""
    base = tmp_path_factory.mktemp("irn_stage")
    root = tiny_voc["root"]
    cache = load_label_cache(tiny_voc["labels"])
    ids = list(cache)[:6]
    items = {}
    for image_id in ids:
        mask = load_mask(root, image_id)
        keys = cache[image_id]
        high_res = seed_maps_from_mask(mask, keys)
        h, w = mask.shape
        cam = torch.nn.functional.interpolate(torch.from_numpy(high_res)[None], size=(-(-h // 4), -(-w // 4)),
                                              mode="bilinear", align_corners=False)[0].numpy()
        items[image_id] = str(base / "seeds" / f"{image_id}.npz")
        save_npz_atomic(items[image_id], format=np.array("wsss-seed/1"), keys=np.array(keys, np.int64),
                        cam=cam.astype(np.float32), high_res=high_res.astype(np.float32),
                        threshold=np.float32(np.nan), image_size=np.array([h, w], np.int64))
    write_index(base / "seeds" / "index.json", {"format": "wsss-index/1", "suffix": ".npz", "items": items})
    labels = {"format": "wsss-image-labels/1", "split": "train_aug", "class_names": tiny_voc["class_names"],
              "labels": {i: cache[i] for i in ids}}
    write_json_atomic(base / "labels.json", labels)
    return {"base": base, "root": str(root), "ids": ids, "cache": cache, "seeds": str(base / "seeds" / "index.json"),
            "labels": str(base / "labels.json")}


@pytest.fixture(scope="module")
def ir_label_index(stage, settings):
    """make_ir_labels over two shards, merged into an index."""
    shard_dirs = []
    for shard in range(2):
        out = stage["base"] / "ir_labels" / f"shard_{shard}"
        make_ir_labels.main(["--voc-root", stage["root"], "--seeds", stage["seeds"], "--out-dir", str(out),
                             "--shard", str(shard), "--num-shards", "2", "--settings", json.dumps(settings)])
        shard_dirs.append(out)
    index_path = stage["base"] / "ir_labels" / "index.json"
    write_index(index_path, merge_shard_dirs(shard_dirs, ".png", stage["ids"]))
    return index_path


def test_make_ir_labels_outputs(stage, ir_label_index):
    index = load_index(ir_label_index)
    assert list(index) == stage["ids"]
    assert sorted(p.stem for p in (stage["base"] / "ir_labels" / "shard_0").glob("*.png")) == sorted(stage["ids"][0::2])
    for image_id, path in index.items():
        label = load_label_png(path)
        gt = load_mask(stage["root"], image_id)
        assert label.shape == gt.shape
        assert set(np.unique(label)) <= {0, 255, *stage["cache"][image_id]}
        # the seeds are the blurred ground truth, so the answer is known: inside each object (its mask eroded by
        # 1 px) the object's class id, far from every object (> 8 px, where the blurred seeds are below the
        # confident-background threshold) confident background
        for k in stage["cache"][image_id]:
            core = ndimage.binary_erosion(gt == k, iterations=1)
            assert core.any() and (label[core] == k).mean() >= 0.9, (image_id, k)
        far = ndimage.distance_transform_edt(gt == 0) > 8
        assert far.any() and (label[far] == 0).mean() >= 0.95, image_id


def test_make_ir_labels_names_a_bad_seed_file(stage, tmp_path, settings):
    bad = tmp_path / "bad.npz"
    save_npz_atomic(bad, format=np.array("wsss-seed/1"), keys=np.array([1]))
    write_index(tmp_path / "index.json",
                {"format": "wsss-index/1", "suffix": ".npz", "items": {stage["ids"][0]: str(bad)}})
    with pytest.raises(DataError, match="bad.npz"):
        make_ir_labels.main(["--voc-root", stage["root"], "--seeds", str(tmp_path / "index.json"), "--out-dir",
                             str(tmp_path / "out"), "--settings", json.dumps(settings)])


# 5 images in batches of 2 (drop_last: 2 steps per epoch) for 2 epochs: max_step = (5 // 2) * 2 = 4
SCHEDULE = {"max_train_images": 5, "batch_size": 2, "epochs": 2}


@pytest.fixture(scope="module")
def trained(stage, ir_label_index, settings, imagenet_file):
    """One run of the irn.train CLI with --imagenet-weights, recording the poly schedule it sets at every step."""
    out = stage["base"] / "irn" / "model.pt"
    calls = []

    def recording_set_poly_lr(optimizer, step, max_step, power):
        set_poly_lr(optimizer, step, max_step, power)
        calls.append({"step": step, "max_step": max_step, "lr": [g["lr"] for g in optimizer.param_groups]})

    with mock.patch.object(irn_train, "set_poly_lr", recording_set_poly_lr):
        irn_train.main(["--voc-root", stage["root"], "--ir-labels", str(ir_label_index), "--out", str(out),
                        "--settings", json.dumps({**settings, **SCHEDULE}), "--device", "cpu",
                        "--imagenet-weights", str(imagenet_file[0])])
    return out, calls


def test_train_irn_cli_on_cpu(trained, settings, imagenet_file):
    out, _ = trained
    assert out.is_file() and not out.with_name("model.state.pt").exists()
    model = irn_train.load_model(out, torch.device("cpu"))
    trained_state = model.state_dict()
    # the backbone is the --imagenet-weights file's (fc dropped), unchanged by training (frozen)
    path, imagenet = imagenet_file
    assert all(torch.equal(trained_state["backbone." + k], v) for k, v in imagenet.items() if not k.startswith("fc."))
    assert torch.load(out, weights_only=True)["backbone_init"] == f"imagenet:{path}"
    torch.manual_seed(settings["seed"])  # as train seeds it: the heads' initial values
    initial = irn_train.build_model(settings, imagenet_weights=path).state_dict()
    assert not torch.equal(trained_state["edge_out.weight"], initial["edge_out.weight"])  # the heads trained
    assert not torch.equal(trained_state["dp_out.3.weight"], initial["dp_out.3.weight"])


def test_train_irn_runs_the_poly_schedule(trained):
    """IRN's PolyOptimizer: lr of step t = initial lr * (1 - t / max_step) ** 0.9 with max_step = (n_images //
    batch) * epochs = (5 // 2) * 2 = 4 here; edge branch 0.1, displacement branch 1.0 (hand-computed values)."""
    _, calls = trained
    assert [c["step"] for c in calls] == [0, 1, 2, 3] and {c["max_step"] for c in calls} == {4}
    factors = [1.0, 0.7718895067235705, 0.5358867312681466, 0.2871745887492587]  # 0.75 ** 0.9, 0.5 ** 0.9, ...
    for call, factor in zip(calls, factors):
        assert call["lr"] == pytest.approx([0.1 * factor, 1.0 * factor], rel=1e-12)


def test_poly_max_step_is_irns():
    assert irn_train.poly_max_step(10582, 32, 3) == 990  # IRN on train_aug: (10582 // 32) * 3
    assert irn_train.poly_max_step(5, 2, 2) == 4         # drop_last: the odd image does not count


def irn_model(freeze=True):
    torch.manual_seed(0)
    return IRNet(depth=18, freeze_backbone=freeze)


@pytest.mark.parametrize("quirk, momentum", [(True, 1e-4), (False, 0.9)])
def test_optimizer_is_irns(quirk, momentum):
    """IRN train_irn: PolyOptimizer([edge params at lr, weight_decay wd], [displacement params at 10 lr, wd]),
    which calls SGD(params, lr, wd): wd lands in SGD's momentum slot, so momentum = 1e-4 and weight decay = 1e-4 in
    both groups. Without the quirk: the configured momentum 0.9. With the schema defaults (IRN's lr 0.1, x10)."""
    settings = {**load_section("irn", {}), "reference_momentum_quirk": quirk}
    model = irn_model()
    optimizer = irn_train.make_optimizer(model, settings)
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 2
    edge, disp = optimizer.param_groups
    assert edge["lr"] == pytest.approx(0.1, rel=1e-12) and disp["lr"] == pytest.approx(1.0, rel=1e-12)
    for group in (edge, disp):
        assert group["weight_decay"] == pytest.approx(1e-4, rel=1e-12)
        assert group["momentum"] == pytest.approx(momentum, rel=1e-12)
        assert group["dampening"] == 0 and not group["nesterov"]
    assert [id(p) for p in edge["params"]] == [id(p) for p in model.edge_parameters()]
    assert [id(p) for p in disp["params"]] == [id(p) for p in model.displacement_parameters()]
    backbone = {id(p) for p in model.backbone.parameters()}
    assert not backbone & {id(p) for g in optimizer.param_groups for p in g["params"]}  # frozen: not optimised
    # poly schedule on IRN's VOC numbers: max_step = (10582 // 32) * 3 = 990
    max_step = irn_train.poly_max_step(10582, 32, 3)
    for step, edge_lr in ((0, 0.1), (100, 0.09086138047323694), (495, 0.05358867312681466),
                          (989, 0.0002013391936053551)):
        set_poly_lr(optimizer, step, max_step, settings["poly_power"])
        assert edge["lr"] == pytest.approx(edge_lr, rel=1e-12)
        assert disp["lr"] == pytest.approx(10 * edge_lr, rel=1e-12)


def test_optimizer_with_trainable_backbone():
    """Not the reference (its backbone is frozen): a trainable backbone joins as a third group at the edge lr."""
    model = irn_model(freeze=False)
    optimizer = irn_train.make_optimizer(model, {**load_section("irn", {}), "freeze_backbone": False})
    assert len(optimizer.param_groups) == 3
    third = optimizer.param_groups[2]
    assert [id(p) for p in third["params"]] == [id(p) for p in model.backbone.parameters()]
    assert third["lr"] == pytest.approx(0.1) and third["weight_decay"] == pytest.approx(1e-4)


def test_frozen_random_backbone_is_refused(stage, ir_label_index, settings, tmp_path):
    frozen_random = {**settings, "freeze_backbone": True, "init_from_bas": False}
    names = r"irn\.freeze_backbone.*imagenet_weights.*irn\.init_from_bas"
    with pytest.raises(ConfigError, match=names):
        irn_train.build_model(frozen_random)
    with pytest.raises(ConfigError, match=names):  # the CLI without --imagenet-weights, before reading any data
        irn_train.main(["--voc-root", str(tmp_path / "none"), "--ir-labels", str(tmp_path / "none.json"),
                        "--out", str(tmp_path / "m.pt"), "--settings", json.dumps(frozen_random), "--device", "cpu"])
    assert not (tmp_path / "m.pt").exists()
    irn_train.build_model({**frozen_random, "freeze_backbone": False})  # a trainable random backbone is allowed


@pytest.mark.parametrize("cli, args, bad, key", [
    (make_ir_labels.main, ["--seeds", "none.json", "--out-dir", "out"], {"crf": {"iterations": 0}},
     "irn.crf.iterations"),
    (make_pseudo_masks.main, ["--seeds", "none.json", "--model", "m.pt", "--labels", "l.json", "--out-dir", "out",
                              "--device", "cpu"], {"beta": "x"}, "irn.beta"),
    (irn_train.main, ["--ir-labels", "none.json", "--out", "m.pt", "--device", "cpu"], {"lr": -1}, "irn.lr"),
])
def test_clis_read_settings_through_the_schema(cli, args, bad, key, tmp_path):
    """Each CLI validates --settings against irn.schema.yaml before it reads any file; the error names the key."""
    with pytest.raises(ConfigError, match=f"config key {key}"):
        cli(["--voc-root", str(tmp_path), *args, "--settings", json.dumps(bad)])


def test_imagenet_weights_reach_the_backbone(settings, imagenet_file, tmp_path):
    path, imagenet = imagenet_file
    model = irn_train.build_model(settings, imagenet_weights=path)
    backbone = model.backbone.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer4.1.conv2.weight"):
        assert torch.equal(backbone[key], imagenet[key]), key
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        irn_train.build_model(settings, imagenet_weights=tmp_path / "missing.pth")
    torch.save(torchvision_state(34, seed=0), tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match="resnet34.pth"):  # a file of another depth is named
        irn_train.build_model(settings, imagenet_weights=tmp_path / "resnet34.pth")


def test_train_resume_reproduces_uninterrupted_run(stage, ir_label_index, settings, imagenet_file, tmp_path,
                                                   monkeypatch):
    two_epochs = {**settings, "epochs": 2}
    weights = imagenet_file[0]
    full = tmp_path / "full.pt"
    irn_train.train(stage["root"], str(ir_label_index), full, two_epochs, device=torch.device("cpu"),
                    state_path=tmp_path / "full_state.pt", imagenet_weights=weights)

    class Interrupted(Exception):
        pass

    real_save = irn_train.save_checkpoint

    def save_then_crash(path, **state):
        real_save(path, **state)
        raise Interrupted

    monkeypatch.setattr(irn_train, "save_checkpoint", save_then_crash)
    resumed = tmp_path / "resumed.pt"
    with pytest.raises(Interrupted):
        irn_train.train(stage["root"], str(ir_label_index), resumed, two_epochs, device=torch.device("cpu"),
                        state_path=tmp_path / "state.pt", imagenet_weights=weights)
    assert (tmp_path / "state.pt").is_file() and not resumed.exists()
    monkeypatch.setattr(irn_train, "save_checkpoint", real_save)
    lines = []
    monkeypatch.setattr(irn_train.log, "info", lambda fmt, *args: lines.append(fmt % args))
    irn_train.train(stage["root"], str(ir_label_index), resumed, two_epochs, device=torch.device("cpu"),
                    state_path=tmp_path / "state.pt", resume=True, imagenet_weights=weights)
    a = irn_train.load_model(full, torch.device("cpu")).state_dict()
    b = irn_train.load_model(resumed, torch.device("cpu")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run's log carries the whole history: epoch 1 (from the state file) and epoch 2
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]


def test_train_rejects_batch_larger_than_data(stage, ir_label_index, settings, tmp_path):
    with pytest.raises(DataError, match="batch_size"):
        irn_train.train(stage["root"], str(ir_label_index), tmp_path / "m.pt",
                        {**settings, "batch_size": 64, "freeze_backbone": False}, device=torch.device("cpu"),
                        state_path=tmp_path / "s.pt")


def test_labels_from_walk_by_hand():
    walked = torch.zeros(2, 2, 2)
    walked[0] = 0.2
    walked[1, 0, 0] = 0.8  # top-left cell: class 9 wins there after upsampling
    labels = labels_from_walk(walked, np.array([4, 9]), (7, 6), bg_threshold=0.22)
    assert labels.shape == (7, 6) and labels.dtype == np.uint8
    assert labels[0, 0] == 9 and labels[6, 5] == 4  # 0.2 / 0.8 = 0.25 > 0.22
    assert set(np.unique(labels_from_walk(walked, np.array([4, 9]), (7, 6), bg_threshold=0.3))) == {0, 9}
    assert labels_from_walk(torch.zeros(1, 2, 2), np.array([3]), (8, 8), 0.22).max() == 0  # no NaN class
    assert labels_from_walk(torch.zeros(0, 2, 2), np.zeros(0), (8, 8), 0.22).shape == (8, 8)


def test_make_pseudo_masks_cli(stage, trained, settings):
    """The trained model through the CLI, on one shard: which files, their size, their values."""
    out_dir = stage["base"] / "pseudo_masks" / "shard_1"
    model, _ = trained
    make_pseudo_masks.main(["--voc-root", stage["root"], "--seeds", stage["seeds"], "--model", str(model),
                            "--labels", stage["labels"], "--out-dir", str(out_dir), "--shard", "1",
                            "--num-shards", "2", "--settings", json.dumps(settings), "--device", "cpu"])
    written = sorted(p.stem for p in out_dir.glob("*.png"))
    assert written == sorted(stage["ids"][1::2])
    for image_id in written:
        mask = load_label_png(out_dir / f"{image_id}.png")
        assert mask.shape == load_image(stage["root"], image_id).shape[:2]
        assert set(np.unique(mask)) <= {0, *stage["cache"][image_id]}
        assert 255 not in mask


def constant_boundary_model(path, logit: float):
    """An irn.train checkpoint whose boundary logit is ``logit`` at every pixel, whatever the image."""
    torch.manual_seed(0)
    model = IRNet(depth=18)
    with torch.no_grad():
        model.edge_out.weight.zero_()
        model.edge_out.bias.fill_(logit)
    save_checkpoint(path, model=model.state_dict(), settings=json.dumps({"backbone_depth": 18,
                                                                         "freeze_backbone": True}), step=0)
    return path


def band_seeds(stage, directory):
    """Seeds for the stage's images whose first class's stride-4 map is three horizontal bands, 1.0 / 0.39 / 0.3
    (the other classes 0), and their index."""
    items = {}
    for image_id in stage["ids"]:
        h, w = load_image(stage["root"], image_id).shape[:2]
        keys = stage["cache"][image_id]
        h4, w4 = -(-h // 4), -(-w // 4)
        cam = np.zeros((len(keys), h4, w4), np.float32)
        cam[0, :h4 // 3], cam[0, h4 // 3:2 * h4 // 3], cam[0, 2 * h4 // 3:] = 1.0, 0.39, 0.3
        items[image_id] = str(directory / f"{image_id}.npz")
        save_npz_atomic(items[image_id], format=np.array("wsss-seed/1"), keys=np.array(keys, np.int64), cam=cam,
                        high_res=np.zeros((len(keys), h, w), np.float32), threshold=np.float32(np.nan),
                        image_size=np.array([h, w], np.int64))
    write_index(directory / "index.json", {"format": "wsss-index/1", "suffix": ".npz", "items": items})
    return directory / "index.json"


def test_make_pseudo_masks_known_answers(stage, settings, tmp_path):
    """Boundary maps whose walks are known, through the CLI.
    Boundary sigmoid(5) = 0.993 everywhere: every affinity 0.007 ** beta (10) ~ 1e-22, the walk keeps each value
    where it is, so the mask is the seed after BAS's post-processing (seed ** 1.5, divided by the global max,
    background plane 0.22):
    - on the blurred-ground-truth seeds: the object's class inside each object (mask eroded by 1 px), background far
      from every object;
    - on band seeds 1.0 / 0.39 / 0.3: 0.39 ** 1.5 = 0.244 > 0.22 stays the class, 0.3 ** 1.5 = 0.164 < 0.22 becomes
      background (without the power, 0.3 > 0.22 would stay the class; with IRN's plane 0.25, 0.244 would not).
    Boundary sigmoid(-5) = 0.007: affinities ~ 1, the walk floods the image, so one class of the image's labels
    covers it all."""
    bas_post = {**settings, "seed_power": 1.5, "sem_seg_bg_threshold": 0.22}

    def run(logit, seeds=stage["seeds"]):
        out_dir = tmp_path / f"masks_{logit}_{Path(seeds).parent.name}"
        make_pseudo_masks.main(["--voc-root", stage["root"], "--seeds", str(seeds), "--model",
                                str(constant_boundary_model(tmp_path / f"m{logit}.pt", logit)), "--labels",
                                stage["labels"], "--out-dir", str(out_dir), "--settings", json.dumps(bas_post),
                                "--device", "cpu"])
        return {i: load_label_png(out_dir / f"{i}.png") for i in stage["ids"]}

    (tmp_path / "bands").mkdir()
    for image_id, mask in run(5.0, band_seeds(stage, tmp_path / "bands")).items():
        h4 = -(-mask.shape[0] // 4)
        # rows whose bilinear x4 upsampling (align_corners=False) sees one band only: cells [a, b) -> 4a+2 .. 4b-3
        bands = [(0, h4 // 3), (h4 // 3, 2 * h4 // 3), (2 * h4 // 3, h4)]
        top, middle, bottom = (mask[4 * a + 2:4 * b - 2] for a, b in bands)
        k = stage["cache"][image_id][0]
        assert top.size and (top == k).all() and (middle == k).all() and (bottom == 0).all(), image_id
    for image_id, mask in run(5.0).items():
        gt = load_mask(stage["root"], image_id)
        for k in stage["cache"][image_id]:
            core = ndimage.binary_erosion(gt == k, iterations=1)
            assert core.any() and (mask[core] == k).mean() >= 0.9, (image_id, k)
        far = ndimage.distance_transform_edt(gt == 0) > 8
        assert far.any() and (mask[far] == 0).all(), image_id
    for image_id, mask in run(-5.0).items():
        values = np.unique(mask)
        assert len(values) == 1 and values[0] in stage["cache"][image_id], (image_id, values)


def test_train_with_backbone_from_bas(stage, ir_label_index, settings, tmp_path):
    from test_irn_losses import bas_like_state
    net, state = bas_like_state(18)
    save_checkpoint(tmp_path / "bas.pt", model=state, model_config={"method": "bas", "depth": 18})
    with_bas = {**settings, "init_from_bas": True}
    with pytest.raises(ValueError, match="irn.init_from_bas is true but no BAS checkpoint"):
        irn_train.train(stage["root"], str(ir_label_index), tmp_path / "m.pt", with_bas, device=torch.device("cpu"),
                        state_path=tmp_path / "s.pt")
    irn_train.train(stage["root"], str(ir_label_index), tmp_path / "m.pt", with_bas, device=torch.device("cpu"),
                    state_path=tmp_path / "s.pt", bas_checkpoint=tmp_path / "bas.pt")
    backbone = irn_train.load_model(tmp_path / "m.pt", torch.device("cpu")).backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in net.state_dict().items())  # loaded, then frozen
