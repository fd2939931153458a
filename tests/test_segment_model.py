"""DeepLabV2 in mmseg: the summed head, output stride 8 with the ceil-mode max-pool, the deeplab-pytorch key
converter (checked against a tiny deeplab-pytorch-layout network), MSC outputs/loss and the stepwise poly lr."""
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip("mmseg")

from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import segment.registry_modules  # noqa: E402,F401
from segment.init_weights import convert_key, convert_state_dict, match_init_state  # noqa: E402
from segment.models import resize_labels_nearest  # noqa: E402
from segment.settings import build_mmseg_config, load_settings  # noqa: E402
from wsss_common.io import DataError  # noqa: E402

register_all_modules(init_default_scope=True)
CLASSES = ["background", "a", "b"]
WIDTH = 4  # base channels of the tiny ResNet-50 used throughout


def tiny_cfg(tmp_path, **overrides):
    s = load_settings({"backbone_depth": 50, "backbone_base_channels": WIDTH, "crop_size": 33, **overrides})
    return build_mmseg_config(s, voc_root=tmp_path, index_file=tmp_path / "index.json", class_names=CLASSES,
                              work_dir=tmp_path / "wd")


def build(cfg):
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def test_head_sums_all_four_branches(tmp_path):
    head = build(tiny_cfg(tmp_path)).decode_head
    assert [b.dilation[0] for b in head.aspp] == [6, 12, 18, 24]
    assert all(b.bias is not None for b in head.aspp) and head.conv_seg is None
    x = torch.randn(1, head.in_channels, 30, 30)
    with torch.no_grad():
        for b in head.aspp:
            b.bias.fill_(0.1)
        total = head([x])
        branch_sum = sum(b(x) for b in head.aspp)
        assert torch.allclose(total, branch_sum, atol=1e-6)
        for k in range(4):  # zeroing any one branch changes the output by exactly that branch
            w, bias = head.aspp[k].weight.clone(), head.aspp[k].bias.clone()
            head.aspp[k].weight.zero_()
            head.aspp[k].bias.zero_()
            assert torch.allclose(total - head([x]), F.conv2d(x, w, bias, padding=head.dilations[k],
                                                              dilation=head.dilations[k]), atol=1e-5)
            head.aspp[k].weight.copy_(w)
            head.aspp[k].bias.copy_(bias)


def test_backbone_output_stride_8_with_ceil_mode_maxpool(tmp_path):
    model = build(tiny_cfg(tmp_path))
    bb = model.backbone
    assert bb.maxpool.ceil_mode and bb.norm_eval and bb.style == "caffe"
    with torch.no_grad():
        for size, expected in ((65, 9), (64, 9), (321, 41), (33, 5)):
            feats = bb(torch.randn(1, 3, size, size))
            assert feats[0].shape[-1] == expected, size
    # dilation 2 in every block of res4 and 4 in res5 (contract_dilation False), strides only in the stem/res3
    assert all(b.conv2.dilation == (2, 2) for b in bb.layer3) and all(b.conv2.dilation == (4, 4) for b in bb.layer4)
    assert bb.layer2[0].conv1.stride == (2, 2) and bb.layer3[0].conv1.stride == (1, 1)
    # frozen BN: no BN parameter trains and BN stays in eval mode in train()
    model.train()
    bns = [m for m in bb.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())


# --- a tiny network in deeplab-pytorch's module layout (key names only matter), to produce its state dict ---
def _cbr(cin, cout, k, s, p, d, relu=True):
    layers = [("conv", nn.Conv2d(cin, cout, k, s, p, d, bias=False)), ("bn", nn.BatchNorm2d(cout))]
    if relu:
        layers.append(("relu", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


class _KBottleneck(nn.Module):
    def __init__(self, cin, cout, stride, dilation, downsample):
        super().__init__()
        mid = cout // 4
        self.reduce = _cbr(cin, mid, 1, stride, 0, 1)
        self.conv3x3 = _cbr(mid, mid, 3, 1, dilation, dilation)
        self.increase = _cbr(mid, cout, 1, 1, 0, 1, relu=False)
        self.shortcut = _cbr(cin, cout, 1, stride, 0, 1, relu=False) if downsample else nn.Identity()

    def forward(self, x):
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


class _KAspp(nn.Module):
    def __init__(self, cin, n_classes, rates):
        super().__init__()
        for i, r in enumerate(rates):
            self.add_module(f"c{i}", nn.Conv2d(cin, n_classes, 3, 1, r, r, bias=True))

    def forward(self, x):
        return sum(c(x) for c in self.children())


class KazutoDeepLabV2(nn.Sequential):
    def __init__(self, n_classes, n_blocks, width):
        super().__init__()
        ch = [width * 2 ** p for p in range(6)]
        self.add_module("layer1", nn.Sequential(OrderedDict(
            [("conv1", _cbr(3, ch[0], 7, 2, 3, 1)), ("pool", nn.MaxPool2d(3, 2, 1, ceil_mode=True))])))
        specs = [(ch[0], ch[2], 1, 1), (ch[2], ch[3], 2, 1), (ch[3], ch[4], 1, 2), (ch[4], ch[5], 1, 4)]
        for li, (n, (cin, cout, stride, dil)) in enumerate(zip(n_blocks, specs)):
            blocks = OrderedDict((f"block{i + 1}", _KBottleneck(cin if i == 0 else cout, cout,
                                                                 stride if i == 0 else 1, dil, i == 0))
                                 for i in range(n))
            self.add_module(f"layer{li + 2}", nn.Sequential(blocks))
        self.add_module("aspp", _KAspp(ch[5], n_classes, [6, 12, 18, 24]))


def _randomise_bn(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_key_names():
    assert convert_key("base.layer1.conv1.conv.weight") == "backbone.conv1.weight"
    assert convert_key("layer1.conv1.bn.running_var") == "backbone.bn1.running_var"
    assert convert_key("layer4.block3.conv3x3.bn.weight") == "backbone.layer3.2.bn2.weight"
    assert convert_key("module.layer5.block1.shortcut.conv.weight") == "backbone.layer4.0.downsample.0.weight"
    assert convert_key("layer3.block1.proj.bn.bias") == "backbone.layer2.0.downsample.1.bias"
    assert convert_key("aspp.stages.c3.bias") == "decode_head.aspp.3.bias"
    assert convert_key("fc.weight") is None


def test_kazuto_state_dict_loads_without_missing_keys_and_gives_the_same_logits(tmp_path):
    torch.manual_seed(0)
    kazuto = KazutoDeepLabV2(len(CLASSES), [3, 4, 6, 3], WIDTH).eval()
    _randomise_bn(kazuto)
    state = {f"base.{k}": v for k, v in kazuto.state_dict().items()}  # as deeplab-pytorch's MSC model saves it
    converted, unmapped = convert_state_dict(state)
    assert unmapped == []
    cfg = tiny_cfg(tmp_path)
    cfg.model.msc_at_test = False
    model = build(cfg)
    result = model.load_state_dict(converted, strict=True)  # strict: no missing and no unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        assert torch.allclose(model(x, mode="tensor"), kazuto(x), atol=1e-4)


def test_init_selection_skips_head_and_rejects_wrong_backbone(tmp_path):
    kazuto = KazutoDeepLabV2(7, [3, 4, 6, 3], WIDTH)  # 7 classes: a head of another label set
    converted, _ = convert_state_dict(kazuto.state_dict())
    model = build(tiny_cfg(tmp_path))
    selected, report = match_init_state(model.state_dict(), converted, load_head=True, source="init.pth")
    assert report["head_tensors_loaded"] == 0 and report["head_tensors_skipped"] == 8
    assert not any(k.startswith("decode_head.") for k in selected)
    del converted["backbone.layer2.0.conv1.weight"]
    with pytest.raises(DataError, match="init.pth.*layer2.0.conv1.weight"):
        match_init_state(model.state_dict(), converted, load_head=False, source="init.pth")


def test_resize_labels_matches_pil_nearest():
    from PIL import Image
    import numpy as np

    # hand-made 8 x 8 labels resized to 6 x 6: PIL NEAREST (deeplab-pytorch resize_labels) takes rows/columns
    # 0 2 3 4 5 7; F.interpolate 'nearest-exact' takes 0 2 3 4 6 7 and 'nearest' 0 1 2 4 5 6
    labels = (10 * torch.arange(8)[:, None] + torch.arange(8)[None, :])[None]
    expected = torch.tensor([[0, 2, 3, 4, 5, 7],
                             [20, 22, 23, 24, 25, 27],
                             [30, 32, 33, 34, 35, 37],
                             [40, 42, 43, 44, 45, 47],
                             [50, 52, 53, 54, 55, 57],
                             [70, 72, 73, 74, 75, 77]])
    out = resize_labels_nearest(labels, (6, 6))
    assert out.dtype == labels.dtype and torch.equal(out[0], expected)
    for mode in ("nearest", "nearest-exact"):
        old = F.interpolate(labels[:, None].float(), size=(6, 6), mode=mode)[0, 0].long()
        assert not torch.equal(old, expected), mode
    # random labels (with 255) against PIL itself, square and not, odd and even sizes
    labels = torch.randint(0, 5, (2, 33, 32))
    labels[:, :3] = 255
    for size in ((17, 16), (9, 9), (5, 4), (16, 12), (24, 24)):
        out = resize_labels_nearest(labels, size)
        for i in range(2):
            ref = np.asarray(Image.fromarray(labels[i].numpy().astype(np.float32)).resize(size[::-1], Image.NEAREST))
            assert np.array_equal(out[i].numpy(), ref.astype(np.int64)), size


def test_msc_inputs_are_interpolated_by_scale_factor(tmp_path):
    """The extra MSC inputs are F.interpolate(x, scale_factor=p) as deeplab-pytorch's MSC, not a resize to the
    computed size int(d * p): on 33 x 35 both give 24 x 26 at 0.75, with different pixels."""
    model = build(tiny_cfg(tmp_path))
    x = torch.randn(1, 3, 33, 35)
    seen = []
    real = model.extract_feat

    def recording_extract_feat(inputs):
        seen.append(inputs)
        return real(inputs)

    model.extract_feat = recording_extract_feat
    with torch.no_grad():
        model.multi_scale_logits(x)
    assert len(seen) == 3 and torch.equal(seen[0], x)
    for got, p in zip(seen[1:], (0.5, 0.75)):
        ref = F.interpolate(x, scale_factor=p, mode="bilinear", align_corners=False)
        assert got.shape == ref.shape and torch.equal(got, ref), p
    by_size = F.interpolate(x, size=[int(d * 0.75) for d in x.shape[2:]], mode="bilinear", align_corners=False)
    assert by_size.shape == seen[2].shape and not torch.allclose(by_size, seen[2], atol=1e-3)


def test_msc_outputs_and_loss_terms(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model = build(tiny_cfg(tmp_path))
    x = torch.randn(2, 3, 33, 33)
    outs = model.multi_scale_logits(x)
    assert [tuple(o.shape[2:]) for o in outs] == [(5, 5), (3, 3), (4, 4), (5, 5)]
    up = [F.interpolate(o, size=(5, 5), mode="bilinear", align_corners=False) for o in outs[1:3]]
    assert torch.equal(outs[3], torch.stack([outs[0], *up]).max(0).values)
    samples = []
    for _ in range(2):
        ds = SegDataSample()
        ds.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 33, 33)))
        samples.append(ds)
    losses = model.loss(x, samples)
    assert sorted(k for k in losses if "loss" in k) == ["decode.loss_ce_0.5x", "decode.loss_ce_0.75x",
                                                        "decode.loss_ce_1x", "decode.loss_ce_max"]
    # CE over non-ignored pixels: an all-ignored batch gives no loss contribution, a half-ignored one the mean
    from PIL import Image
    import numpy as np

    for name, out in zip(("1x", "0.5x", "0.75x", "max"), outs):
        h, w = out.shape[2:]  # the labels PIL-nearest resized to this output's size (deeplab-pytorch resize_labels)
        target = torch.stack([torch.from_numpy(np.asarray(
            Image.fromarray(s.gt_sem_seg.data[0].numpy().astype(np.float32)).resize((w, h), Image.NEAREST)))
            for s in samples]).long()
        expected = F.cross_entropy(out, target, ignore_index=255)
        assert torch.allclose(losses[f"decode.loss_ce_{name}"], expected, atol=1e-5), name


def test_paramwise_lr_multipliers_and_stepwise_poly(tmp_path):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = tiny_cfg(tmp_path, lr=0.01, iterations=100, accumulation_steps=2, lr_update_interval=10)
    model = build(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    by_name = {}
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            by_name[id(p)] = group
    named = dict(model.named_parameters())
    assert by_name[id(named["decode_head.aspp.2.weight"])]["lr"] == pytest.approx(0.1)
    assert by_name[id(named["decode_head.aspp.2.bias"])]["lr"] == pytest.approx(0.2)
    assert by_name[id(named["decode_head.aspp.2.bias"])]["weight_decay"] == 0
    assert by_name[id(named["decode_head.aspp.2.weight"])]["weight_decay"] == pytest.approx(5e-4)
    assert by_name[id(named["backbone.layer1.0.conv1.weight"])]["lr"] == pytest.approx(0.01)
    sched_cfg = dict(cfg.param_scheduler[0], optimizer=wrapper)
    sched = PARAM_SCHEDULERS.build(sched_cfg)
    assert sched.end == 200 and sched.step_size == 20  # runner iterations = updates x accumulation
    group = wrapper.optimizer.param_groups[0]
    base = group["initial_lr"]
    lrs = []
    for _ in range(60):
        lrs.append(group["lr"])
        sched.step()
    # lr used by runner iteration t: base * (1 - 10 * floor(update / 10) / 100) ** 0.9 with update = t // 2
    for t in (0, 19, 20, 39, 40, 59):
        assert lrs[t] == pytest.approx(base * (1 - 10 * ((t // 2) // 10) / 100) ** 0.9)
