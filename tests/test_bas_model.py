"""BASNet / CAMNet shapes and strides, checkpoint round trip, CAM recipe switches, input normalisation."""
import numpy as np
import pytest
import torch

from bas_seed.data import normalize
from bas_seed.model import BASNet, CAMNet, backbone_state_dict, build_model, load_model, model_config_of
from wsss_common.training import save_checkpoint

torch.set_num_threads(1)


@pytest.mark.parametrize("agnostic", [True, False])
def test_bas_shapes_are_output_stride_16_with_optional_agnostic_channel(agnostic):
    torch.manual_seed(0)
    net = BASNet(num_fg=5, depth=18, class_agnostic=agnostic).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        x3 = net.extract(x)
        maps = net.generate(x3)
        cam = net.classify(x3)
    assert x3.shape == (2, 256, 4, 6)
    assert maps.shape == (2, 5 + int(agnostic), 4, 6)
    assert float(maps.min()) > 0 and float(maps.max()) < 1  # sigmoid maps
    assert cam.shape == (2, 5, 4, 6)
    # the generator is a 3x3 conv + sigmoid (the agnostic map its own conv, last channel), F2 is layer4 + 1x1 conv
    expected = [torch.sigmoid(torch.nn.functional.conv2d(x3, net.generator.weight, padding=1))]
    if agnostic:
        expected.append(torch.sigmoid(torch.nn.functional.conv2d(x3, net.agnostic.weight, padding=1)))
    assert torch.allclose(maps, torch.cat(expected, 1), atol=1e-6)
    assert net.generator.bias is None and net.classifier.bias is None
    assert net.generator.kernel_size == (3, 3) and net.classifier.kernel_size == (1, 1)
    assert net.layer4[0].conv1.stride == (1, 1) and net.layer3[0].conv1.stride == (2, 2)


def test_bas_training_forward_picks_the_map_of_the_chosen_class():
    torch.manual_seed(0)
    net = BASNet(num_fg=4, depth=18, class_agnostic=True).train()
    x = torch.randn(2, 3, 48, 48)
    out = net(x, torch.tensor([3, 1]))
    assert out["maps"].shape == (2, 4, 3, 3)  # class maps only: the agnostic map is not a generator channel
    assert torch.equal(out["fg_map"][0, 0], out["maps"][0, 3]) and torch.equal(out["fg_map"][1, 0], out["maps"][1, 1])
    with torch.no_grad():
        x3 = net.extract(x)
        agnostic = torch.sigmoid(torch.nn.functional.conv2d(x3, net.agnostic.weight, padding=1))
        # GAP then the 1x1 classifier as a linear map = GAP of F (the classifier is linear)
        pooled = net.layer4(x3).mean(dim=(2, 3))
    assert torch.allclose(out["agnostic_map"], agnostic, atol=1e-6)
    assert torch.allclose(out["scores"], pooled @ net.classifier.weight.flatten(1).T, atol=1e-5)
    assert out["bg_scores"].shape == out["agnostic_bg_scores"].shape == (2, 4)


def test_the_agnostic_head_never_changes_the_released_network():
    """class_agnostic false is the released network (generator: num_fg channels, nothing else new); with the head,
    the same seed trains every other weight bit for bit as without it (its input is detached and it is initialised
    on a forked RNG), so the class-specific maps of an agnostic model are the plain "Ours" maps."""
    import bas_seed.train as bas_train
    from wsss_common.training import make_optimizer

    def train_two_steps(agnostic):
        torch.manual_seed(0)
        net = BASNet(num_fg=3, depth=18, class_agnostic=agnostic).train()
        settings = bas_train.parse_settings({"depth": 18, "class_agnostic": agnostic})
        opt = make_optimizer(bas_train.param_groups(net, 0.01, 10.0, train_biases=True), name="sgd", lr=0.01,
                             weight_decay=1e-4, momentum=0.9, reference_momentum_quirk=False)
        g = torch.Generator().manual_seed(1)
        for _ in range(2):
            images = torch.randn(2, 3, 48, 48, generator=g)
            labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
            total, _ = bas_train.train_step(net, "bas", images, labels, settings, torch.tensor([2, 1]))
            opt.zero_grad()
            total.backward()
            opt.step()
        return net.state_dict()

    plain, with_head = train_two_steps(False), train_two_steps(True)
    assert set(with_head) - set(plain) == {"agnostic.weight"} and set(plain) <= set(with_head)
    assert plain["generator.weight"].shape[0] == 3
    changed = [k for k in plain if not torch.equal(plain[k], with_head[k])]
    assert changed == []
    torch.manual_seed(0)
    assert not torch.equal(with_head["agnostic.weight"], BASNet(3, 18).agnostic.weight)  # the head did train


def test_cam_net_maps_and_logits_agree_and_recipe_switches():
    torch.manual_seed(0)
    net = CAMNet(num_fg=3, depth=18).train()
    x = torch.randn(2, 3, 64, 64)
    logits = net(x)
    maps = net.localization_maps(x)
    # GAP then 1x1 conv == 1x1 conv then GAP (linear), and the maps are ReLU of that conv
    assert torch.allclose(logits, net.classifier(net.features(x)).mean(dim=(2, 3)), atol=1e-5)
    assert maps.shape == (2, 3, 4, 4) and float(maps.detach().min()) >= 0
    assert net.class_agnostic is False
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))  # fixed BN
    logits.sum().backward()
    assert all(p.grad is None for m in (net.stem, net.layer1, net.layer2) for p in m.parameters())
    assert net.layer3[0].conv1.weight.grad is not None
    trainable_bn = CAMNet(num_fg=3, depth=18, fixed_bn=False, freeze_stem=False).train()
    assert trainable_bn.layer1[0].bn1.training and trainable_bn.stem[0].weight.requires_grad


@pytest.mark.parametrize("method", ["bas", "cam"])
def test_checkpoint_round_trip_needs_only_the_model_config(tmp_path, method):
    torch.manual_seed(0)
    config = {"method": method, "depth": 18, "num_fg": 3, "class_agnostic": method == "bas"}
    net = build_model(config).eval()
    assert model_config_of(net, 18) == config
    save_checkpoint(tmp_path / "m.pt", model=net.state_dict(), model_config=config, epoch=1, optimizer={})
    loaded = load_model(tmp_path / "m.pt")
    assert not loaded.training
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.localization_maps(x), net.localization_maps(x))


def _backbone_features(net, x):
    return net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))


@pytest.mark.parametrize("source, target", [("cam", "bas"), ("bas", "cam")])
def test_a_trained_backbone_initialises_the_other_method_through_imagenet_weights(tmp_path, source, target):
    """The exported ResNet loads as ``imagenet_weights`` (torchvision names, strict apart from fc) into a fresh net
    of either method, BN statistics included; a wrong name mapping fails to load or changes the features."""
    torch.manual_seed(0)
    net = build_model({"method": source, "depth": 18, "num_fg": 3, "class_agnostic": source == "bas"})
    with torch.no_grad():  # weights and BN statistics unlike any fresh net's
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for name, b in net.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.mul_(1.5).add_(0.2)
    state = backbone_state_dict(net)
    assert set(k.split(".")[0] for k in state) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
    torch.save(state, tmp_path / "backbone.pth")
    fresh = build_model({"method": target, "depth": 18, "num_fg": 3, "class_agnostic": target == "bas"}).eval()
    loaded = build_model({"method": target, "depth": 18, "num_fg": 3, "class_agnostic": target == "bas"},
                         weights=str(tmp_path / "backbone.pth")).eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        expected = _backbone_features(net.eval(), x)
        assert torch.allclose(_backbone_features(loaded, x), expected, atol=1e-5)
        assert not torch.allclose(_backbone_features(fresh, x), expected, atol=1e-2)


def test_bad_model_config_and_missing_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="method"):
        build_model({"method": "vit", "depth": 18, "num_fg": 3})
    with pytest.raises(ValueError, match="num_fg"):
        build_model({"method": "bas", "depth": 18})
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_model(tmp_path / "nothere.pt")


def test_normalize_uses_imagenet_mean_std_and_chw():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 255
    x = normalize(img)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert x[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)
    assert x[2, 1, 2].item() == pytest.approx(-0.406 / 0.225, rel=1e-5)
