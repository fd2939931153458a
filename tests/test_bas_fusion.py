"""Seed fusion rules (bas_seed.fusion) on hand-computed maps."""
import pytest
import torch

from bas_seed.fusion import MAXNORM_EPS, fuse_foreground, fuse_with_cam, max_normalize


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_max_normalize_divides_each_class_by_its_own_max_plus_eps_without_min_subtraction():
    maps = t([[[0.5, 1.0], [2.0, 4.0]], [[0.5, 0.5], [0.5, 1.0]]])
    out = max_normalize(maps)
    assert torch.allclose(out[0], maps[0] / (4.0 + MAXNORM_EPS))
    assert torch.allclose(out[1], maps[1] / (1.0 + MAXNORM_EPS))
    assert out[1, 0, 0] == pytest.approx(0.5 / 1.00001)  # the floor stays: no min subtraction


def test_max_normalize_rejects_a_vector():
    with pytest.raises(ValueError, match="H, W"):
        max_normalize(torch.ones(3))


CLASS = t([[[0.2, 1.0], [0.6, 0.1]]])  # one class map, max 1
FOREGROUND = t([[0.5, 0.4], [1.0, 0.0]])  # class-agnostic map, max 1


def test_fusion_none_returns_the_class_maps_unchanged():
    assert torch.equal(fuse_foreground(CLASS, FOREGROUND, "none"), CLASS)


def test_replace_takes_the_foreground_value_where_the_class_map_is_higher():
    # class > fg at (0,1): 1.0 > 0.4 and (1,1): 0.1 > 0.0 -> [[0.2, 0.4], [0.6, 0.0]], taken literally: the class
    # the fusion weakened keeps its lower maximum 0.6 (no second max-normalisation scaling it back up)
    expected = t([[[0.2, 0.4], [0.6, 0.0]]])
    assert torch.allclose(fuse_foreground(CLASS, FOREGROUND, "replace"), expected)


def test_average_takes_the_mean_where_the_class_map_is_higher():
    # (0,1): (1.0 + 0.4)/2 = 0.7, (1,1): (0.1 + 0.0)/2 = 0.05; max 0.7 stays 0.7
    expected = t([[[0.2, 0.7], [0.6, 0.05]]])
    assert torch.allclose(fuse_foreground(CLASS, FOREGROUND, "average"), expected)


def test_renormalize_option_max_normalises_the_fused_map_again():
    # replace gives [[0.2, 0.4], [0.6, 0.0]] (max 0.6); seeds.foreground_renormalize divides it by 0.6 + eps
    fused = fuse_foreground(CLASS, FOREGROUND, "replace", renormalize=True)
    assert torch.allclose(fused, t([[[0.2, 0.4], [0.6, 0.0]]]) / (0.6 + MAXNORM_EPS))


def test_foreground_fusion_applies_the_same_foreground_map_to_every_class():
    two = torch.cat([CLASS, t([[[0.9, 0.3], [0.2, 0.8]]])])
    fused = fuse_foreground(two, FOREGROUND, "replace")
    # class 2: 0.9 > 0.5 -> 0.5; 0.8 > 0.0 -> 0.0; others kept -> [[0.5, 0.3], [0.2, 0.0]]
    assert torch.allclose(fused[1], t([[0.5, 0.3], [0.2, 0.0]]))
    assert torch.allclose(fused[0], fuse_foreground(CLASS, FOREGROUND, "replace")[0])


def test_foreground_fusion_errors_name_the_key_and_the_shapes():
    with pytest.raises(ValueError, match="seeds.foreground_fusion"):
        fuse_foreground(CLASS, FOREGROUND, "max")
    with pytest.raises(ValueError, match="does not match"):
        fuse_foreground(CLASS, torch.ones(3, 2, dtype=torch.float64), "average")


def test_fuse_with_cam_is_maxnorm_of_the_sum_of_maxnorms():
    bas = t([[[1.0, 2.0], [0.0, 4.0]]])
    cam = t([[[3.0, 0.0], [0.0, 1.5]]])
    e = MAXNORM_EPS
    summed = bas / (4 + e) + cam / (3 + e)  # [[0.25+1, 0.5], [0, 1+0.5]]
    expected = summed / (summed.max() + e)
    assert torch.allclose(fuse_with_cam(bas, cam), expected)
    assert fuse_with_cam(bas, cam).max() == pytest.approx(1.5 / (1.5 + e), rel=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        fuse_with_cam(bas, cam[:, :1])
