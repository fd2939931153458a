"""The sparse random walk equals the reference's dense formulation (float64 to 1e-6 relative), plus hand cases."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irn.path_index import build_path_index, direction_path, edge_to_affinity, path_indices
from irn.random_walk import neighbour_affinities, random_walk, stencil_weights, walk_to_label_indices


def dense_random_walk_reference(cams: torch.Tensor, boundary: torch.Tensor, *, radius: int = 5, beta: float = 10,
                                exp_times: int = 8) -> torch.Tensor:
    """IRN's ``propagate_to_edge`` step by step: pad the boundary with 1.0 (left, right, bottom), path affinities on
    the padded map, dense symmetric matrix with a unit diagonal (duplicates summed, as sparse ``to_dense``), crop the
    padding, ``** beta``, column-normalise, square ``exp_times`` times, ``(cams * (1 - boundary)) @ T``.
    O(N^2) memory and O(N^3) time: for tests and the benchmark only."""
    height, width = boundary.shape
    padded_h, padded_w = height + radius, width + 2 * radius
    indices = path_indices(build_path_index(radius), padded_h, padded_w, device=cams.device)
    padded = F.pad(boundary[None, None], (radius, radius, 0, radius), mode="constant", value=1.0)[0]
    affinity = edge_to_affinity(padded, indices)[0].reshape(-1)
    src = indices.src.expand_as(indices.dst).reshape(-1)
    dst = indices.dst.reshape(-1)
    n_padded = padded_h * padded_w
    diagonal = torch.arange(n_padded, device=cams.device)
    dense = torch.zeros(n_padded, n_padded, dtype=cams.dtype, device=cams.device)
    dense.index_put_((torch.cat([src, diagonal, dst]), torch.cat([dst, diagonal, src])),
                     torch.cat([affinity, torch.ones_like(diagonal, dtype=cams.dtype), affinity]), accumulate=True)
    del affinity, src, dst
    dense = dense.view(padded_h, padded_w, padded_h, padded_w)[:-radius, radius:-radius, :-radius, radius:-radius]
    transition = dense.reshape(height * width, height * width) ** beta
    del dense
    transition /= transition.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        transition = transition @ transition
    walked = (cams * (1 - boundary)).reshape(cams.shape[0], -1) @ transition
    return walked.view(cams.shape)


def blob_inputs(k: int, height: int, width: int, seed: int, dtype=torch.float64):
    """Random inputs: uniform cams and a boundary of uniform noise plus a few ridges (values in [0, 1])."""
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(k, height, width, generator=generator, dtype=dtype)
    boundary = torch.rand(height, width, generator=generator, dtype=dtype) * 0.5
    if height > 2:
        boundary[height // 2, :] = torch.rand(width, generator=generator, dtype=dtype) * 0.5 + 0.5
    if width > 3:
        boundary[:, width // 3] = 0.9
    return cams, boundary


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Element-wise |actual - expected| <= rtol * |expected| (plus a tiny floor for exact zeros)."""
    floor = 1e-12 * expected.abs().max().item()
    assert torch.all((actual - expected).abs() <= rtol * expected.abs() + floor), \
        f"max relative error {((actual - expected).abs() / (expected.abs() + floor)).max().item():.3e}"


@pytest.mark.parametrize("height, width", [(1, 1), (2, 3), (4, 1), (3, 9), (7, 5), (12, 17), (21, 10)])
@pytest.mark.parametrize("method", ["csr", "stencil"])
def test_equals_dense_reference_default_parameters(height, width, method):
    cams, boundary = blob_inputs(3, height, width, seed=height * 100 + width)
    expected = dense_random_walk_reference(cams, boundary)
    actual = random_walk(cams, boundary, method=method)
    assert actual.dtype == torch.float64 and actual.shape == (3, height, width)
    assert_relative_close(actual, expected, rtol=1e-6)


@pytest.mark.parametrize("radius, beta, exp_times", [(5, 10, 0), (5, 10, 2), (3, 2, 3), (10, 3.5, 4)])
@pytest.mark.parametrize("method", ["csr", "stencil"])
def test_equals_dense_reference_other_parameters(radius, beta, exp_times, method):
    """Few steps (exp_times 0 = one step of T, before the walk converges) and other radii / betas."""
    cams, boundary = blob_inputs(2, 13, 16, seed=radius + exp_times)
    expected = dense_random_walk_reference(cams, boundary, radius=radius, beta=beta, exp_times=exp_times)
    actual = random_walk(cams, boundary, radius=radius, beta=beta, exp_times=exp_times, method=method)
    assert_relative_close(actual, expected, rtol=1e-6)


def test_float32_close_to_dense_float32():
    cams, boundary = blob_inputs(2, 15, 11, seed=7, dtype=torch.float32)
    expected = dense_random_walk_reference(cams, boundary)
    for method in ("csr", "stencil"):
        actual = random_walk(cams, boundary, method=method)
        assert actual.dtype == torch.float32
        torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-5 * expected.abs().max().item())


def test_neighbour_affinities_equal_in_map_path_maxima():
    """The padding never changes an in-map pair: aff(q, q + d) = 1 - max(boundary on the path), else 0."""
    generator = torch.Generator().manual_seed(3)
    height, width = 6, 7
    boundary = torch.rand(height, width, generator=generator, dtype=torch.float64)
    index = build_path_index(5)
    affinity = neighbour_affinities(boundary, index)
    for d, (dy, dx) in enumerate(index.directions.tolist()):
        path = direction_path(dy, dx)
        for y in range(height):
            for x in range(width):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    expected = 1 - max(boundary[y + py, x + px].item() for py, px in path)
                else:
                    expected = 0.0
                assert affinity[d, y, x].item() == expected


def test_stencil_weights_sum_to_one_and_constant_map_is_fixed():
    """T's columns sum to 1, so the walk averages: a constant map on a boundary-free image stays constant."""
    weights = stencil_weights(torch.rand(9, 8, dtype=torch.float64), build_path_index(5), beta=10)
    assert weights.shape == (69, 9, 8)
    torch.testing.assert_close(weights.sum(dim=0), torch.ones(9, 8, dtype=torch.float64))
    walked = random_walk(torch.full((1, 9, 8), 0.5, dtype=torch.float64), torch.zeros(9, 8, dtype=torch.float64))
    torch.testing.assert_close(walked, torch.full((1, 9, 8), 0.5, dtype=torch.float64))


def test_full_wall_blocks_the_walk():
    """A full-height wall of boundary 1 at column 5: mass starting left of it never reaches the right side."""
    boundary = torch.zeros(10, 12, dtype=torch.float64)
    boundary[:, 5] = 1.0
    cams = torch.zeros(1, 10, 12, dtype=torch.float64)
    cams[0, 3:6, 0:3] = 1.0
    for method in ("csr", "stencil"):
        walked = random_walk(cams, boundary, method=method)
        assert torch.all(walked[0, :, 5:] == 0)
        assert torch.all(walked[0, :, :5] > 0)
        torch.testing.assert_close(walked[0, :, :5], torch.full((10, 5), walked[0, 0, 0].item(),
                                                                 dtype=torch.float64), rtol=1e-3, atol=0)


def test_rejects_bad_shapes_and_method():
    with pytest.raises(ValueError):
        random_walk(torch.rand(2, 4, 5), torch.rand(5, 4))
    with pytest.raises(ValueError):
        random_walk(torch.rand(4, 5), torch.rand(4, 5))
    with pytest.raises(ValueError):
        random_walk(torch.rand(1, 4, 5), torch.rand(4, 5), method="dense")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", ["csr", "stencil"])
def test_runs_on_cuda_and_matches_cpu(method):
    cams, boundary = blob_inputs(3, 17, 13, seed=11)
    expected = random_walk(cams, boundary, method=method)
    actual = random_walk(cams.cuda(), boundary.cuda(), method=method)
    assert actual.device.type == "cuda"
    assert_relative_close(actual.cpu(), expected, rtol=1e-6)


def test_walk_to_label_indices_hand_case():
    """x4 bilinear upsample, ONE global max, background plane, argmax; crop to the image size."""
    walked = torch.zeros(2, 2, 2)
    walked[0, 0, 0] = 4.0                   # class channel 1: strong top-left
    walked[1, 1, 1] = 2.0                   # channel 2: weaker bottom-right, 1/2 of the global max
    labels = walk_to_label_indices(walked, (7, 6), bg_threshold=0.22)
    assert labels.shape == (7, 6) and labels.dtype == torch.int64
    assert labels[0, 0] == 1 and labels[6, 5] == 2
    # (6, 5) samples source (1.125 -> clamped 1, 0.875): channel 2 = 0.875 * 2 / 4 = 0.4375 > 0.22 > channel 1
    normalised = F.interpolate(walked[None], scale_factor=4, mode="bilinear", align_corners=False)[0, :, :7, :6] / 4
    expected = torch.cat([torch.full((1, 7, 6), 0.22), normalised]).argmax(dim=0)
    assert torch.equal(labels, expected)
    assert set(np.unique(labels.numpy()).tolist()) == {0, 1, 2}
