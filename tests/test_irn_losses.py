"""Pair labels and IRN's losses on tiny hand-made maps, checked against hand-computed values and a loop-based
reference formulation; the network's output shapes and frozen backbone."""
import math

import numpy as np
import pytest
import torch

from irn.losses import affinity_labels, affinity_losses, displacement_losses, irn_loss, pair_displacement
from irn.model import IRNet, boundary_map, padded_size
from irn.path_index import build_path_index, path_indices

# Radius 2 has 4 directions, grouped by path length: (0,1), (1,0) [length 2], then (1,-1), (1,1) [length 4].
# On a 3x4 map the sources are rows [0, 2) x cols [1, 3): s0=(0,1), s1=(0,2), s2=(1,1), s3=(1,2).
LABELS = torch.tensor([[[0, 0, 1, 255],
                        [0, 1, 1, 2],
                        [0, 0, 2, 2]]])


@pytest.fixture(scope="module")
def radius2():
    pi = build_path_index(2)
    return pi, path_indices(pi, 3, 4)


def test_radius2_directions(radius2):
    pi, ind = radius2
    assert pi.directions.tolist() == [[0, 1], [1, 0], [1, -1], [1, 1]]
    assert ind.src.tolist() == [1, 2, 5, 6]


def test_affinity_labels_by_hand(radius2):
    _, ind = radius2
    lab = affinity_labels(LABELS, ind)
    # rows: directions (0,1), (1,0), (1,-1), (1,1); columns: sources s0..s3 (worked out on paper)
    bg_pos = [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    fg_pos = [[0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    neg = [[1, 0, 0, 1], [1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]  # (s1, (0,1)) has a 255 end: in no mask
    assert lab["bg_pos"][0].tolist() == bg_pos
    assert lab["fg_pos"][0].tolist() == fg_pos
    assert lab["neg"][0].tolist() == neg


def reference_affinity(edge: np.ndarray, pi, ind) -> np.ndarray:
    """Loop form: for every source and direction, 1 - max of edge over the direction's path points."""
    h, w = edge.shape
    paths = [p for group in pi.path_groups for p in group]
    out = np.zeros((len(paths), ind.src.numel()))
    for s, flat in enumerate(ind.src.tolist()):
        y, x = divmod(flat, w)
        for d, path in enumerate(paths):
            out[d, s] = 1 - max(edge[y + py, x + px] for py, px in path)
    return out


def test_affinity_losses_match_loop_reference(radius2):
    pi, ind = radius2
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(1, 1, 3, 4)), dtype=torch.float64)
    lab = affinity_labels(LABELS, ind)
    got = affinity_losses(logits, lab, ind)
    aff = reference_affinity(torch.sigmoid(logits)[0, 0].numpy(), pi, ind)
    pos = -np.log(aff + 1e-5)
    neg = -np.log(1 + 1e-5 - aff)
    bg, fg, ng = (lab[k][0].numpy() for k in ("bg_pos", "fg_pos", "neg"))
    expect_bg = (pos * bg).sum() / (bg.sum() + 1e-5)
    expect_fg = (pos * fg).sum() / (fg.sum() + 1e-5)
    assert got["bg_pos"].item() == pytest.approx(expect_bg, rel=1e-6)
    assert got["pos"].item() == pytest.approx(expect_bg / 2 + expect_fg / 2, rel=1e-6)
    assert got["neg"].item() == pytest.approx((neg * ng).sum() / (ng.sum() + 1e-5), rel=1e-6)


def test_affinity_losses_hand_values(radius2):
    _, ind = radius2
    lab = affinity_labels(LABELS, ind)
    no_edge = torch.full((1, 1, 3, 4), -1e4, dtype=torch.float64)  # sigmoid = 0: affinity 1 everywhere
    got = affinity_losses(no_edge, lab, ind)
    # 1 bg_pos and 3 fg_pos pairs, each average over n pairs divided by n + 1e-5
    expect_pos = -math.log(1 + 1e-5) * (1 / (1 + 1e-5) + 3 / (3 + 1e-5)) / 2
    assert got["pos"].item() == pytest.approx(expect_pos, rel=1e-9)
    n_neg = 11
    expect_neg = n_neg * -math.log((1 + 1e-5) - 1) / (n_neg + 1e-5)
    assert got["neg"].item() == pytest.approx(expect_neg, rel=1e-7)  # the pair counts are float32


def test_displacement_losses_hand_values(radius2):
    pi, ind = radius2
    lab = affinity_labels(LABELS, ind)
    ys, xs = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
    # D(p) = -p: every pair's D(src) - D(dst) equals its offset (dy, dx): fg loss 0
    minus_position = -torch.stack([ys, xs])[None]
    pair = pair_displacement(minus_position, ind)
    torch.testing.assert_close(pair[0, :, :, 0], torch.tensor(pi.directions, dtype=torch.float32).t())
    got = displacement_losses(minus_position, lab, pi, ind)
    assert got["dp_fg"].item() == pytest.approx(0.0, abs=1e-7)
    # the single bg pair has offset (1,-1): |1| + |-1| = 2, divided by 2 * 1 pair
    assert got["dp_bg"].item() == pytest.approx(2 / (2 + 1e-5), rel=1e-6)
    # constant D: pair difference 0; fg pairs have offsets (0,1), (1,0), (1,-1): (1 + 1 + 2) / (2 * 3)
    got = displacement_losses(torch.zeros(1, 2, 3, 4), lab, pi, ind)
    assert got["dp_fg"].item() == pytest.approx(4 / (6 + 1e-5), rel=1e-6)
    assert got["dp_bg"].item() == 0.0


def test_total_loss_hand_values(radius2):
    """Boundary 0.2 everywhere (affinity 0.8 on every pair) and D(p) = -2p (every pair's D(src) - D(dst) is twice its
    offset) on LABELS (1 bg_pos, 3 fg_pos, 11 neg pairs), worked out by hand:
      pos   = -log(0.8 + 1e-5) * (1 / (1 + 1e-5) + 3 / (3 + 1e-5)) / 2                       = 0.2231296
      neg   = -log(1 + 1e-5 - 0.8) * 11 / (11 + 1e-5)                                         = 1.6093865
      dp_fg = |2o - o|_1 over the fg offsets (0,1), (1,0), (1,-1): 1 + 1 + 2 = 4, / (2 * 3 + 1e-5) = 0.6666656
      dp_bg = |2 * (1,-1)|_1 = 4, / (2 * 1 + 1e-5)                                             = 1.9999900
      total = (pos + neg) / 2 + (dp_fg + dp_bg) / 2                                            = 2.2495858
    Every term differs, so a dropped term or a wrong weight moves the total by at least 0.11."""
    pi, ind = radius2
    lab = affinity_labels(LABELS, ind)
    edge = torch.full((1, 1, 3, 4), math.log(0.25), dtype=torch.float64)  # sigmoid = 1 / (1 + 4) = 0.2
    ys, xs = torch.meshgrid(torch.arange(3.0, dtype=torch.float64), torch.arange(4.0, dtype=torch.float64),
                            indexing="ij")
    disp = -2 * torch.stack([ys, xs])[None]
    total, t = irn_loss(edge, disp, lab, pi, ind)  # float64 maps; the pair counts are float32, hence rel=1e-6
    assert t["pos"].item() == pytest.approx(0.22312956386438754, rel=1e-6)
    assert t["neg"].item() == pytest.approx(1.6093864506054671, rel=1e-6)
    assert t["dp_fg"].item() == pytest.approx(0.6666655555574075, rel=1e-6)
    assert t["dp_bg"].item() == pytest.approx(1.9999900000499997, rel=1e-6)
    assert total.item() == pytest.approx(2.249585785038631, rel=1e-6)


def test_network_shapes_and_frozen_backbone():
    torch.manual_seed(0)
    model = IRNet(depth=18).train()
    assert not model.backbone.training and model.edge_out.training
    edge, disp = model(torch.randn(2, 3, 64, 48))
    assert edge.shape == (2, 1, 16, 12) and disp.shape == (2, 2, 16, 12)
    (edge.sum() + disp.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.edge_parameters() + model.displacement_parameters())
    ids = {id(p) for p in model.edge_parameters()} | {id(p) for p in model.displacement_parameters()}
    assert ids == {id(p) for n, p in model.named_parameters() if not n.startswith("backbone.")}


def test_boundary_map_flip_and_large_images():
    torch.manual_seed(0)
    model = IRNet(depth=18).eval()
    image = torch.randn(3, 37, 70)  # wider than the pad size: padded to a multiple of 16
    assert padded_size(37, 70, 48) == (48, 80)
    boundary = boundary_map(model, image, pad_to=48)
    assert boundary.shape == (10, 18) and 0 <= boundary.min() and boundary.max() <= 1
    # the flip pair average is symmetric: the flipped image gives the flipped boundary ... up to the padding side,
    # so compare on an image that exactly fills its canvas
    square = torch.randn(3, 48, 48)
    torch.testing.assert_close(boundary_map(model, square.flip(-1), pad_to=48),
                               boundary_map(model, square, pad_to=48).flip(-1), rtol=1e-4, atol=1e-5)
    logits = model(square[None])[0][0, 0]
    ran = []
    model.dp_out.register_forward_hook(lambda *_: ran.append("dp_out"))
    torch.testing.assert_close(boundary_map(model, square, pad_to=48, flip=False), torch.sigmoid(logits))
    assert ran == []  # the walk needs the boundary alone: the displacement branch is skipped


def bas_like_state(depth):
    """A state dict named like bas_seed's BASNet (stem.0 = conv1, stem.1 = bn1, layer1..4, generator, classifier)."""
    from wsss_common.resnet import build_resnet
    torch.manual_seed(1)
    net = build_resnet(depth)
    state = {}
    for k, v in net.state_dict().items():
        k = k.replace("conv1.", "stem.0.", 1) if k.startswith("conv1.") else k
        k = k.replace("bn1.", "stem.1.", 1) if k.startswith("bn1.") else k
        state[k] = v
    state["generator.weight"] = torch.zeros(7, 256, 3, 3)
    state["classifier.weight"] = torch.zeros(6, 512, 1, 1)
    return net, state


def test_backbone_init_from_bas_state():
    from irn.model import load_backbone_from_bas
    net, state = bas_like_state(18)
    model = IRNet(depth=18)
    load_backbone_from_bas(model, state)
    for k, v in net.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    with pytest.raises(ValueError, match="irn.backbone_depth"):
        load_backbone_from_bas(IRNet(depth=34), state, source="bas/model.pt")
    with pytest.raises(ValueError, match="no stem.0"):
        load_backbone_from_bas(model, {"generator.weight": torch.zeros(1)})
