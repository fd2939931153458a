"""bas_seed.train on the tiny synthetic set (CPU): one epoch, resume after a kill, NaN stop, CAM baseline, settings."""
import json

import numpy as np
import pytest
import torch

from bas_seed import losses
from bas_seed import train as bas_train
from bas_seed.data import bas_augment, cam_augment, epoch_batches, load_training_labels, random_crop
from bas_seed.model import BASNet, CAMNet, load_model
from wsss_common.io import DataError
from wsss_common.training import load_checkpoint, make_optimizer

from conftest import epochs_of

TINY = {"depth": 18, "epochs": 1, "batch_size": 4, "lr": 0.01, "resize": 40, "crop": 32, "num_workers": 0,
        "cam": {"epochs": 1, "batch_size": 4, "lr": 0.01, "resize_long": [32, 48], "crop": 32}}


def run(tiny_voc, tmp_path, settings, *extra):
    out = tmp_path / "model.pt"
    bas_train.main(["--voc-root", str(tiny_voc["root"]), "--labels", str(tiny_voc["labels"]),
                    "--settings", json.dumps(settings), "--out", str(out), "--loss-log", str(tmp_path / "loss.jsonl"),
                    "--device", "cpu", "--threads", "1", "--seed", "5", *extra])
    return out


def test_one_bas_epoch_writes_checkpoint_and_loss_log(tiny_voc, tmp_path):
    out = run(tiny_voc, tmp_path, TINY)
    assert out.is_file() and not (tmp_path / "model.pt.partial").exists()
    ckpt = load_checkpoint(out)
    assert ckpt["model_config"] == {"method": "bas", "depth": 18, "num_fg": 5, "class_agnostic": True}
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4  # 16 images / batch 4
    lines = (tmp_path / "loss.jsonl").read_text().splitlines()
    entry = json.loads(lines[0])
    assert len(lines) == 1 and entry["epoch"] == 1
    assert {"total", "mcls", "frg", "ac", "bas", "agnostic_bas", "agnostic_ac", "lr"} <= set(entry)
    assert 0 <= entry["bas"] <= 1 and 0 < entry["ac"] < 1
    assert isinstance(load_model(out), BASNet)


def test_biases_are_not_trained_by_default_and_new_layers_get_ten_times_lr():
    torch.manual_seed(0)
    net = BASNet(num_fg=5, depth=18)
    groups = bas_train.param_groups(net, 0.005, 10.0, train_biases=False)
    assert [g["lr"] for g in groups] == [0.005, 0.05]
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert ids[1] == {id(net.generator.weight), id(net.classifier.weight), id(net.agnostic.weight)}
    assert id(net.stem[1].weight) in ids[0] and id(net.stem[1].bias) not in ids[0]  # BN gamma trained, beta not
    assert not net.stem[1].bias.requires_grad
    split = bas_train.param_groups(net, 0.005, 10.0, train_biases=False, generator_lr_mult=1.0)
    assert [(g["lr"], [id(p) for p in g["params"]]) for g in split[1:]] == [
        (0.05, [id(net.classifier.weight)]), (0.005, [id(net.generator.weight), id(net.agnostic.weight)])]
    all_groups = bas_train.param_groups(BASNet(num_fg=5, depth=18), 0.005, 10.0, train_biases=True)
    assert sum(len(g["params"]) for g in all_groups) == sum(len(g["params"]) for g in groups) + len(
        [n for n, _ in net.named_parameters() if n.endswith("bias")])


@pytest.mark.parametrize("changes", [{}, {"optimizer": "adamw", "warmup_epochs": 1}], ids=["sgd", "adamw-warmup"])
def test_resume_after_a_kill_gives_the_same_weights_as_an_uninterrupted_run(tiny_voc, tmp_path, monkeypatch, changes):
    torch.use_deterministic_algorithms(True)
    try:
        settings = {**TINY, "epochs": 2, **changes}
        full = load_checkpoint(run(tiny_voc, tmp_path / "full", settings))

        real_save = bas_train.save_checkpoint

        def save_then_die(path, **state):  # the process is killed right after the epoch-1 checkpoint
            real_save(path, **state)
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(bas_train, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            run(tiny_voc, tmp_path / "killed", settings)
        monkeypatch.setattr(bas_train, "save_checkpoint", real_save)
        assert (tmp_path / "killed" / "model.pt.partial").is_file()
        assert not (tmp_path / "killed" / "model.pt").exists()
        # Snakemake deletes an incomplete job's outputs before the rerun: the loss log of epoch 1 is gone
        (tmp_path / "killed" / "loss.jsonl").unlink()
        resumed = load_checkpoint(run(tiny_voc, tmp_path / "killed", settings, "--resume"))
    finally:
        torch.use_deterministic_algorithms(False)
    assert resumed["step"] == full["step"] == 8
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    strip = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (tmp_path / "full" / "loss.jsonl").read_text().splitlines()]
    again = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (tmp_path / "killed" / "loss.jsonl").read_text().splitlines()]
    assert strip == again and len(strip) == 2  # the whole history, although the resumed run never read the old log


def test_optimizer_choice_keeps_group_lrs_and_rejects_unknown_names():
    net = BASNet(num_fg=2, depth=18)
    for name, kind in (("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)):
        opt = make_optimizer(bas_train.param_groups(net, 0.001, 10.0, train_biases=True), name=name, lr=0.001,
                             weight_decay=1e-4, momentum=0.9, reference_momentum_quirk=False)
        assert type(opt) is kind and [g["lr"] for g in opt.param_groups] == [0.001, 0.01]
    # The released PolyOptimizer: SGD(params, lr, weight_decay) puts 1e-4 into the momentum slot, and every group
    # carries weight_decay 1e-4. Two steps of loss 2p from p = 1 with lr 0.1, by hand:
    # d1 = 2 + 1e-4 * 1 = 2.0001, p1 = 1 - 0.1 * 2.0001 = 0.79999;
    # d2 = 2 + 1e-4 * 0.79999, buf = 1e-4 * 2.0001 + d2 = 2.000280009, p2 = 0.79999 - 0.1 * buf = 0.5999619991.
    # (The old reading, weight decay 0, gives 0.59998; true momentum 0.9 gives 0.42.)
    w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    quirk = make_optimizer([{"params": [w], "lr": 0.1}], name="sgd", lr=0.1, weight_decay=1e-4, momentum=0.9,
                           reference_momentum_quirk=True)
    for _ in range(2):
        quirk.zero_grad()
        (2 * w).sum().backward()
        quirk.step()
    assert w.item() == pytest.approx(0.5999619991, abs=1e-12)
    assert quirk.param_groups[0]["momentum"] == 1e-4 and quirk.param_groups[0]["weight_decay"] == 1e-4
    # AdamW (decoupled weight decay, default betas 0.9 / 0.999, eps 1e-8), two steps of loss p^2 from p = 1,
    # lr 0.1, weight decay 0.01, by hand: g1 = 2, m1 = 0.2, v1 = 0.004, m1 / (1 - 0.9) / sqrt(v1 / (1 - 0.999)) = 1,
    # p1 = 1 * (1 - 0.1 * 0.01) - 0.1 = 0.899; g2 = 1.798, m2 = 0.3598, v2 = 0.007228804,
    # p2 = 0.899 * 0.999 - 0.1 * (0.3598 / 0.19) / sqrt(0.007228804 / 0.001999) = 0.79851902667.
    # (Adam's L2 weight decay inside the gradient gives 0.9 at step 1: the normalised step hides it.)
    w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    adamw = make_optimizer([{"params": [w], "lr": 0.1}], name="adamw", lr=0.1, weight_decay=0.01, momentum=0.9,
                           reference_momentum_quirk=True)
    for expected in (0.899, 0.79851902667):
        adamw.zero_grad()
        (w ** 2).sum().backward()
        adamw.step()
        assert w.item() == pytest.approx(expected, abs=1e-8)
    assert adamw.defaults["fused"] is True  # torch's one-kernel step (about a tenth of a demo BAS step with the loop)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], name="adam", lr=0.1, weight_decay=0, momentum=0,
                       reference_momentum_quirk=False)
    with pytest.raises(ValueError, match="optimizer"):
        bas_train.parse_settings(json.dumps({"optimizer": "adam"}))


def test_nan_loss_stops_with_a_clear_message(tiny_voc, tmp_path):
    with pytest.raises(FloatingPointError, match="loss is (nan|inf).*learning rate"):
        run(tiny_voc, tmp_path, {**TINY, "lr": 1e36})
    assert not (tmp_path / "model.pt").exists()


def test_cam_baseline_via_method_override(tiny_voc, tmp_path):
    out = run(tiny_voc, tmp_path, TINY, "--method", "cam")
    ckpt = load_checkpoint(out)
    assert ckpt["model_config"] == {"method": "cam", "depth": 18, "num_fg": 5, "class_agnostic": False}
    assert isinstance(load_model(out), CAMNet)
    entry = json.loads((tmp_path / "loss.jsonl").read_text().splitlines()[0])
    assert set(entry) == {"epoch", "step", "lr", "seconds", "total", "cam"}


def test_settings_errors_name_the_key():
    with pytest.raises(ValueError, match="lamda"):
        bas_train.parse_settings(json.dumps({"lamda": 1.0}))
    with pytest.raises(ValueError, match="config key bas.cam: .*'learning_rate'"):
        bas_train.parse_settings(json.dumps({"cam": {"learning_rate": 1.0}}))
    with pytest.raises(ValueError, match="method"):
        bas_train.parse_settings(json.dumps({"method": "grad-cam"}))
    s = bas_train.parse_settings(json.dumps({"method": "bas", "cam": {"lr": 0.5}}), method="cam")
    assert s["method"] == "cam" and bas_train.recipe(s)["lr"] == 0.5 and s["cam"]["crop"] == 512


def test_label_cache_errors_name_the_file(tmp_path):
    bad = tmp_path / "labels.json"
    bad.write_text(json.dumps({"format": "wsss-image-labels/1", "split": "x", "class_names": ["bg", "a"],
                               "labels": {"img1": [1], "img2": [3]}}))
    with pytest.raises(DataError, match="labels.json.*img2"):
        load_training_labels(bad, require_label=True)
    with pytest.raises(DataError, match="missing.json"):
        load_training_labels(tmp_path / "missing.json", require_label=True)


def test_epoch_batches_are_reproducible_disjoint_over_ranks_and_drop_last():
    a = epoch_batches(10, 2, seed=1, epoch=3)
    assert a == epoch_batches(10, 2, seed=1, epoch=3) and a != epoch_batches(10, 2, seed=1, epoch=4)
    assert len(a) == 5 and sorted(sum(a, [])) == list(range(10))
    r0, r1 = epoch_batches(11, 2, 1, 0, rank=0, world_size=2), epoch_batches(11, 2, 1, 0, rank=1, world_size=2)
    assert len(r0) == len(r1) == 2 and not set(sum(r0, [])) & set(sum(r1, []))


def test_augmentations_give_crop_sized_normalised_tensors_with_zero_padding():
    img = np.full((30, 50, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    assert bas_augment(img, rng, resize=40, crop=32).shape == (3, 32, 32)
    small = bas_augment(img, rng, resize=20, crop=32, resize_mode="long_side")  # 12 x 20 placed in a 32 canvas
    assert small.shape == (3, 32, 32) and int((small[0] != 0).sum()) == 12 * 20
    assert cam_augment(img, rng, resize_long=(40, 60), crop=32).shape == (3, 32, 32)
    patch = random_crop(np.arange(16, dtype=np.float32).reshape(4, 4), 2, np.random.default_rng(1))
    assert patch.shape == (2, 2) and patch[0, 1] == patch[0, 0] + 1 and patch[1, 0] == patch[0, 0] + 4


def test_cached_images_give_the_same_samples_from_memory(tiny_voc, tmp_path):
    # bas.cache_images: every epoch's samples bit for bit those read from disk, served with the JPEGs gone, and the
    # kept images read-only (an augmentation writing into its input would change the later epochs)
    import shutil
    from functools import partial
    from bas_seed.data import ClassificationDataset

    root = shutil.copytree(tiny_voc["root"], tmp_path / "VOC2012")
    ids, labels, num_fg = load_training_labels(tiny_voc["labels"], require_label=True)
    augment = partial(bas_augment, resize=40, crop=32)
    disk = ClassificationDataset(root, ids, labels, num_fg, augment, seed=3)
    kept = ClassificationDataset(root, ids, labels, num_fg, augment, seed=3, cache_images=True)

    expected = epochs_of(disk)
    shutil.rmtree(root / "JPEGImages")
    with pytest.raises(DataError, match="missing"):
        disk[0]
    got = epochs_of(kept)
    assert all(torch.equal(g[0], e[0]) and torch.equal(g[1], e[1]) for g, e in zip(got, expected))
    assert not torch.equal(got[0][0], got[len(ids)][0])  # each epoch its own crop of the kept image
    assert disk.images.nbytes == 0 and kept.images.nbytes > 0
    with pytest.raises(ValueError, match="read-only"):
        kept.images(ids[0])[0, 0, 0] = 1


def test_cli_settings_get_the_schema_defaults_and_errors_name_the_key():
    """bas_seed.train reads its section through wsss_common.config.load_section: what a rule leaves out gets the
    schema's default (also inside ``cam``), and a bad or unknown key fails naming it."""
    settings = bas_train.parse_settings(json.dumps({"lr": 0.02, "cam": {"epochs": 2}}), method="cam")
    assert settings["method"] == "cam" and settings["lr"] == 0.02 and settings["epochs"] == 10
    assert settings["cam"]["epochs"] == 2 and settings["cam"]["lr"] == 0.1 and settings["cam"]["crop"] == 512
    with pytest.raises(ValueError, match="config key bas.cam.crop"):
        bas_train.parse_settings(json.dumps({"cam": {"crop": "big"}}))
    with pytest.raises(ValueError, match="config key bas: .*'weights' was unexpected"):
        bas_train.parse_settings(json.dumps({"weights": "x.pth"}))  # the file is the top-level imagenet_weights


def test_warmup_trains_only_the_classification_loss():
    """warmup_epochs (random-init stand-in for ImageNet weights): the total is L_mcls, the generator gets no gradient."""
    torch.manual_seed(0)
    model = BASNet(num_fg=3, depth=18, class_agnostic=True).train()
    images = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    picked = torch.tensor([0, 1])
    settings = bas_train.parse_settings(json.dumps({"depth": 18}))
    total, terms = bas_train.train_step(model, "bas", images, labels, settings, picked, warmup=True)
    assert set(terms) == {"mcls"} and torch.equal(total, terms["mcls"])
    assert torch.allclose(total, losses.mcls_loss(model(images, picked)["scores"], labels))
    total.backward()
    assert model.generator.weight.grad is None or not model.generator.weight.grad.any()
    assert model.classifier.weight.grad.abs().sum() > 0
    model.zero_grad()
    total, terms = bas_train.train_step(model, "bas", images, labels, settings, picked, warmup=False)
    total.backward()
    assert model.generator.weight.grad.abs().sum() > 0
