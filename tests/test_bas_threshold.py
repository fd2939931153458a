"""Image-specific threshold search (bas_seed.threshold): label masks, AMC losses, and the batched search against a
slow one-threshold-at-a-time, one-class-at-a-time reference."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from bas_seed.threshold import (amc_losses, class_masks, search_threshold, seed_labels, threshold_grid,
                                threshold_scores)


def test_threshold_grid_matches_the_bas_sweep():
    grid = threshold_grid(0.20, 0.44, 0.01)
    assert len(grid) == 25 and grid[0] == 0.20 and grid[-1] == 0.44
    assert np.allclose(np.diff(grid), 0.01)
    assert list(threshold_grid(0.1, 0.3, 0.1)) == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="step"):
        threshold_grid(0.1, 0.3, 0.0)
    with pytest.raises(ValueError, match="below start"):
        threshold_grid(0.5, 0.3, 0.1)


def test_seed_labels_is_argmax_with_a_background_plane_and_ties_go_to_background():
    maps = torch.tensor([[[0.5, 0.2], [0.9, 0.3]],
                         [[0.4, 0.6], [0.1, 0.3]]])
    labels = seed_labels(maps, torch.tensor([0.3, 0.55]))
    # t = 0.3: (0,0) class1 0.5; (0,1) class2 0.6; (1,0) class1 0.9; (1,1) best 0.3 == t -> background
    assert labels[0].tolist() == [[1, 2], [1, 0]]
    # t = 0.55: 0.5 -> bg, 0.6 -> class 2, 0.9 -> class 1, 0.3 -> bg
    assert labels[1].tolist() == [[0, 2], [1, 0]]


def test_class_masks_are_per_class_area_fractions_on_the_feature_grid():
    maps = torch.zeros(2, 4, 4)
    maps[0, :2, :2] = 0.9        # top-left cell fully class 1
    maps[1, 2:, 2:3] = 0.8       # half of the bottom-right cell class 2
    maps[0, 0, 2] = 0.2          # one pixel of the top-right cell, below t = 0.5 but above t = 0.1
    m = class_masks(maps, torch.tensor([0.1, 0.5]), (2, 2))
    assert m.shape == (2, 2, 2, 2)
    assert m[1, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert m[1, 1].tolist() == [[0.0, 0.0], [0.0, 0.5]]
    assert m[0, 0].tolist() == [[1.0, 0.25], [0.0, 0.0]]


class LinearF2(nn.Module):
    """F2 = 1x1 conv with fixed weights, so the GAP scores can be computed by hand."""

    def __init__(self, weight):
        super().__init__()
        self.conv = nn.Conv2d(len(weight[0]), len(weight), 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).view(len(weight), -1, 1, 1))

    def forward(self, x3):
        return self.conv(x3)


def test_amc_losses_on_hand_computed_scores():
    # features: channel 0 = 1 everywhere, channel 1 = 2 on the left column, 0 on the right (2x2 grid)
    x3 = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[2.0, 0.0], [2.0, 0.0]]])
    f2 = LinearF2([[0.0, 1.0], [1.0, -1.0]])  # class channel 0 scores ch1; channel 1 scores ch0 - ch1
    masks = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],     # t0: class A = left column
                          [[[0.5, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])    # t1
    channels = torch.tensor([0, 1])
    l_bas, l_ac = amc_losses(f2, x3, channels, masks)
    # full-image scores: S_A = mean(ch1) = 1; S_B = mean(ch0 - ch1) = 0 -> relu 0
    # t0, A: erase left column -> ch1 = 0 -> S_b = 0 -> ratio 0
    # t0, B: nothing erased -> S_b = 0 (relu) -> 0 / (0 + 1e-8) = 0, not > S
    # t1, A: ch1 at (0,0) halved -> mean(ch1) = (1 + 0 + 2 + 0) / 4 = 0.75 -> ratio 0.75
    # t1, B: erase (1,1): ch0 - ch1 = [[-1, 1], [-1, 0]] -> mean -0.25 -> relu 0 -> 0
    assert torch.allclose(l_bas, torch.tensor([[0.0, 0.0], [0.75, 0.0]]), atol=1e-6)
    assert torch.allclose(l_ac, torch.tensor([[0.5, 0.0], [0.125, 0.25]]))
    assert torch.allclose(threshold_scores(l_bas, l_ac), torch.tensor([0.25, 0.5625]))


def test_background_score_above_the_full_score_gives_ratio_one():
    x3 = torch.tensor([[[1.0, -3.0]]])  # one channel, 1x2 grid; F2 = identity -> S = mean = -1 -> relu 0
    f2 = LinearF2([[1.0]])
    masks = torch.tensor([[[[0.0, 1.0]]]])  # erase the negative cell -> S_b = 0.5 > S
    l_bas, _ = amc_losses(f2, x3, torch.tensor([0]), masks)
    assert l_bas.item() == 1.0


# ---- batched search == slow reference --------------------------------------------------------------------------

def slow_reference(classify, x3, maps, channels, thresholds, ac_weight=1.0):
    """One F2 pass per (threshold, class); masks built pixel by pixel from the definition."""
    maps_np = maps.numpy()
    k, hh, ww = maps_np.shape
    h, w = x3.shape[1:]
    scores = []
    with torch.no_grad():
        full = classify(x3[None]).mean(dim=(2, 3))[0]
        for t in thresholds:
            stacked = np.concatenate([np.full((1, hh, ww), t, maps_np.dtype), maps_np])
            labels = stacked.argmax(axis=0)
            per_class = []
            for c in range(k):
                binary = (labels == c + 1).astype(np.float32)
                cell = binary.reshape(h, hh // h, w, ww // w).mean(axis=(1, 3))  # area average (exact multiples)
                mask = torch.from_numpy(cell)
                bg = classify((x3 * (1 - mask))[None]).mean(dim=(2, 3))[0, channels[c]].item()
                s = max(full[channels[c]].item(), 0.0)
                s_b = max(bg, 0.0)
                l_bas = 1.0 if s_b > s else s_b / (s + 1e-8)
                per_class.append(l_bas + ac_weight * float(cell.mean()))
            scores.append(np.mean(per_class))
    scores = np.array(scores)
    return float(thresholds[int(np.argmin(scores))]), scores


def tiny_f2(c3, num_fg, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(c3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, num_fg, 1, bias=False))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].bias.uniform_(0.0, 0.5)
    return net.eval()


@pytest.mark.parametrize("seed", range(6))
def test_batched_search_matches_the_slow_reference_on_random_maps(seed):
    g = torch.Generator().manual_seed(seed)
    c3, num_fg, k = 4, 5, 1 + seed % 3
    f2 = tiny_f2(c3, num_fg, seed)
    x3 = torch.rand(c3, 4, 6, generator=g) * 2
    smooth = torch.nn.functional.interpolate(torch.rand(1, k, 4, 6, generator=g), size=(16, 24), mode="bilinear",
                                             align_corners=False)[0]
    maps = smooth / smooth.amax(dim=(1, 2), keepdim=True)
    channels = torch.randperm(num_fg, generator=g)[:k].sort().values
    grid = threshold_grid(0.05, 0.95, 0.05)
    chosen, scores = search_threshold(f2, x3, maps, channels, grid, ac_weight=1.0, chunk=seed % 2 * 7)
    ref_chosen, ref_scores = slow_reference(f2, x3, maps, channels, grid)
    assert np.allclose(scores, ref_scores, atol=1e-5)
    assert chosen == ref_chosen
    assert chosen == grid[int(np.argmin(scores))]  # the minimum of L_bas + L_ac


def test_search_on_a_real_basnet_f2_matches_the_slow_reference():
    from bas_seed.model import BASNet

    torch.manual_seed(0)
    net = BASNet(num_fg=3, depth=18, class_agnostic=True).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        x3 = net.extract(image)[0]  # (256, 4, 4)
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 64, 64, generator=g)
    channels = torch.tensor([0, 2])
    grid = threshold_grid(0.2, 0.9, 0.1)
    chosen, scores = search_threshold(net.classify, x3, maps, channels, grid, ac_weight=0.5)
    ref_chosen, ref_scores = slow_reference(net.classify, x3, maps, channels, grid, ac_weight=0.5)
    assert np.allclose(scores, ref_scores, atol=1e-5)
    assert chosen == ref_chosen


def test_ties_pick_the_smallest_threshold_and_bad_inputs_are_named():
    f2 = LinearF2([[1.0]])
    x3 = torch.ones(1, 2, 2)
    maps = torch.zeros(1, 8, 8)  # no pixel above any threshold: every score is L_bas = 1, L_ac = 0
    chosen, scores = search_threshold(f2, x3, maps, torch.tensor([0]), np.array([0.3, 0.4, 0.5]))
    assert chosen == 0.3 and np.allclose(scores, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="class channels"):
        search_threshold(f2, x3, maps, torch.tensor([0, 1]), np.array([0.3]))
