"""IRN stage end to end on the tiny synthetic set: config drafts against the schema, data augmentation,
make_ir_labels, one train_irn run (plus resume), make_pseudo_masks and its post-processing."""
import json
from pathlib import Path

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
from wsss_common.io import DataError, load_label_png, save_npz_atomic, write_json_atomic
from wsss_common.shards import load_index, merge_shard_dirs, write_index
from wsss_common.voc import load_image, load_label_cache, load_mask

ROOT = Path(__file__).resolve().parents[1]


def load_section(name):
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["irn"]


@pytest.fixture(scope="module")
def settings():
    return load_section("test")


@pytest.mark.parametrize("name", ["test", "demo", "voc12"])
def test_shipped_configs_match_schema(name):
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "irn.schema.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    section = load_section(name)
    jsonschema.validate(section, schema, cls=jsonschema.Draft202012Validator)
    defaults = {k: v["default"] for k, v in schema["properties"].items()}
    assert set(section) == set(defaults)
    if name == "voc12":
        assert section == defaults


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
        assert (label == 0).any()  # the blurred GT seeds leave confident background


def test_make_ir_labels_names_a_bad_seed_file(stage, tmp_path, settings):
    bad = tmp_path / "bad.npz"
    save_npz_atomic(bad, format=np.array("wsss-seed/1"), keys=np.array([1]))
    write_index(tmp_path / "index.json",
                {"format": "wsss-index/1", "suffix": ".npz", "items": {stage["ids"][0]: str(bad)}})
    with pytest.raises(DataError, match="bad.npz"):
        make_ir_labels.main(["--voc-root", stage["root"], "--seeds", str(tmp_path / "index.json"), "--out-dir",
                             str(tmp_path / "out"), "--settings", json.dumps(settings)])


@pytest.fixture(scope="module")
def trained(stage, ir_label_index, settings):
    out = stage["base"] / "irn" / "model.pt"
    means = irn_train.train(stage["root"], str(ir_label_index), out, settings, device=torch.device("cpu"),
                            state_path=out.with_name("state.pt"))
    return out, means


def test_train_irn_step_on_cpu(trained, settings):
    out, means = trained
    assert out.is_file() and not out.with_name("state.pt").exists()
    assert np.isfinite(means["loss"]) and means["loss"] > 0
    model = irn_train.load_model(out, torch.device("cpu"))
    torch.manual_seed(settings["seed"])
    initial = irn_train.build_model(settings)
    trained_state, initial_state = model.state_dict(), initial.state_dict()
    backbone = [k for k in initial_state if k.startswith("backbone.")]
    assert all(torch.equal(trained_state[k], initial_state[k]) for k in backbone)  # frozen
    assert not torch.equal(trained_state["edge_out.weight"], initial_state["edge_out.weight"])
    assert not torch.equal(trained_state["dp_out.3.weight"], initial_state["dp_out.3.weight"])


def test_train_resume_reproduces_uninterrupted_run(stage, ir_label_index, settings, tmp_path, monkeypatch):
    two_epochs = {**settings, "epochs": 2}
    full = tmp_path / "full.pt"
    irn_train.train(stage["root"], str(ir_label_index), full, two_epochs, device=torch.device("cpu"),
                    state_path=tmp_path / "full_state.pt")

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
                        state_path=tmp_path / "state.pt")
    assert (tmp_path / "state.pt").is_file() and not resumed.exists()
    monkeypatch.setattr(irn_train, "save_checkpoint", real_save)
    irn_train.train(stage["root"], str(ir_label_index), resumed, two_epochs, device=torch.device("cpu"),
                    state_path=tmp_path / "state.pt", resume=True)
    a = irn_train.load_model(full, torch.device("cpu")).state_dict()
    b = irn_train.load_model(resumed, torch.device("cpu")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_rejects_batch_larger_than_data(stage, ir_label_index, settings, tmp_path):
    with pytest.raises(DataError, match="batch_size"):
        irn_train.train(stage["root"], str(ir_label_index), tmp_path / "m.pt", {**settings, "batch_size": 64},
                        device=torch.device("cpu"), state_path=tmp_path / "s.pt")


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


def test_train_with_backbone_from_bas(stage, ir_label_index, settings, tmp_path):
    from test_irn_losses import bas_like_state
    from wsss_common.training import save_checkpoint
    net, state = bas_like_state(18)
    save_checkpoint(tmp_path / "bas.pt", model=state, model_config={"method": "bas", "depth": 18})
    with_bas = {**settings, "init_from_bas": True}
    with pytest.raises(ValueError, match="irn.init_from_bas"):
        irn_train.train(stage["root"], str(ir_label_index), tmp_path / "m.pt", with_bas, device=torch.device("cpu"),
                        state_path=tmp_path / "s.pt")
    irn_train.train(stage["root"], str(ir_label_index), tmp_path / "m.pt", with_bas, device=torch.device("cpu"),
                    state_path=tmp_path / "s.pt", bas_checkpoint=tmp_path / "bas.pt")
    backbone = irn_train.load_model(tmp_path / "m.pt", torch.device("cpu")).backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in net.state_dict().items())  # loaded, then frozen
