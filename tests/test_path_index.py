"""Path index: direction counts, hand-checked paths, flat indices, gathered affinities and pair labels."""
import numpy as np
import pytest
import torch

from irn.path_index import (build_path_index, direction_path, edge_to_affinity, pair_endpoints, path_indices,
                            search_directions, source_window)


@pytest.mark.parametrize("radius, n_directions, n_groups", [(5, 34, 9), (10, 152, 20)])
def test_direction_counts_and_half_plane(radius, n_directions, n_groups):
    index = build_path_index(radius)
    directions = [tuple(d) for d in index.directions.tolist()]
    assert len(directions) == n_directions == len(search_directions(radius))
    assert len(index.path_groups) == n_groups
    assert set(directions) == set(search_directions(radius))
    for dy, dx in directions:
        assert dy > 0 or (dy == 0 and dx > 0)                 # half-plane: no pair counted twice
        assert dy * dy + dx * dx < radius * radius
        assert max(abs(dy), abs(dx)) <= index.reach
    lengths = [group.shape[1] for group in index.path_groups]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)


def test_search_order_starts_like_reference():
    assert search_directions(5)[:6] == [(0, 1), (0, 2), (0, 3), (0, 4), (1, -4), (1, -3)]   # 1 + 16 < 25
    index = build_path_index(5)
    assert index.directions[:4].tolist() == [[0, 1], [1, 0], [0, 2], [2, 0]]   # path length 2, then length 3


def test_hand_checked_paths():
    assert direction_path(0, 3).tolist() == [[0, 3], [0, 2], [0, 1], [0, 0]]
    assert direction_path(1, 0).tolist() == [[1, 0], [0, 0]]
    # diagonal: both off-diagonal corners are 1/sqrt(2) from the line
    assert direction_path(1, 1).tolist() == [[1, 1], [0, 1], [1, 0], [0, 0]]
    # (2, 1): every point of the 3x2 box is within 2/sqrt(5) < 1 of the line
    assert direction_path(2, 1).tolist() == [[2, 1], [1, 1], [2, 0], [0, 1], [1, 0], [0, 0]]
    # (3, 1): (0, 1) and (3, 0) are 3/sqrt(10) < 1 away, (1,1)/(2,0) are 2/sqrt(10): all 8 points in
    assert len(direction_path(3, 1)) == 8
    # (4, 1): (0, 1) and (4, 0) are 4/sqrt(17) < 1 away -> all 10 points; (1, -4) mirrors it
    assert len(direction_path(4, 1)) == 10
    assert direction_path(1, -2).tolist() == [[1, -2], [0, -2], [1, -1], [0, -1], [1, 0], [0, 0]]


@pytest.mark.parametrize("radius", [5, 10])
def test_paths_destination_first_and_within_unit_distance(radius):
    for group in build_path_index(radius).path_groups:
        for path in group:
            dy, dx = path[0]
            assert abs(dy) + abs(dx) > max(abs(y) + abs(x) for y, x in path[1:])
            assert [0, 0] in path.tolist()
            distances = np.abs(dy * path[:, 1] - dx * path[:, 0]) / np.hypot(dy, dx)
            assert (distances < 1).all()
            assert len({tuple(p) for p in path.tolist()}) == len(path)


def test_source_window_and_flat_indices():
    index = build_path_index(5)
    rows, cols = source_window(index, 8, 12)
    assert (rows, cols) == (slice(0, 4), slice(4, 8))
    indices = path_indices(index, 8, 12)
    assert indices.window == (4, 4)
    assert indices.src[:5].tolist() == [4, 5, 6, 7, 16]
    offsets = torch.as_tensor(index.directions[:, 0] * 12 + index.directions[:, 1])
    assert torch.equal(indices.dst, indices.src[None, :] + offsets[:, None])
    for group in indices.path_groups:
        assert torch.equal(group[:, -1], indices.src.expand(group.shape[0], -1))   # (0, 0) sorts last


def test_training_window_size_at_radius_10():
    indices = path_indices(build_path_index(10), 128, 128)
    assert indices.window == (119, 110) and indices.src.numel() == 13090
    assert indices.dst.shape == (152, 13090)


def test_too_small_map_is_rejected():
    with pytest.raises(ValueError):
        path_indices(build_path_index(5), 4, 20)


def test_edge_to_affinity_matches_pairwise_loop():
    torch.manual_seed(0)
    index = build_path_index(5)
    height, width = 9, 13
    edge = torch.rand(2, 1, height, width, dtype=torch.float64)
    affinity = edge_to_affinity(edge, path_indices(index, height, width))
    assert affinity.shape == (2, 34, 5 * 5)
    rows, cols = source_window(index, height, width)
    for b in range(2):
        for d, (dy, dx) in enumerate(index.directions.tolist()):
            path = direction_path(dy, dx)
            for s, (y, x) in enumerate((y, x) for y in range(rows.start, rows.stop)
                                       for x in range(cols.start, cols.stop)):
                expected = 1 - max(edge[b, 0, y + py, x + px].item() for py, px in path)
                assert affinity[b, d, s].item() == expected


def test_ridge_cuts_affinity():
    """A vertical ridge of edge 1 at column 6: horizontal pairs across it get 0, pairs on one side get 1."""
    index = build_path_index(5)
    edge = torch.zeros(1, 8, 12)
    edge[0, :, 6] = 1.0
    indices = path_indices(index, 8, 12)
    affinity = edge_to_affinity(edge, indices)[0]
    src_x = indices.src % 12
    dst_x = indices.dst % 12
    crosses = ((src_x[None] <= 6) & (dst_x >= 6)) | ((src_x[None] >= 6) & (dst_x <= 6))
    assert torch.equal(affinity, (~crosses).float())


def test_pair_endpoints_give_labels_of_both_ends():
    index = build_path_index(5)
    labels = torch.zeros(1, 8, 12, dtype=torch.int64)
    labels[0, :, 8:] = 3
    labels[0, 2, 5] = 255
    indices = path_indices(index, 8, 12)
    src_label, dst_label = pair_endpoints(labels, indices)
    assert src_label.shape == (1, 1, 16) and dst_label.shape == (1, 34, 16)
    # source (0, 4) is background; its (0, 4)-direction destination (0, 8) is class 3; (1, 0) -> (1, 4) is 0
    d_right4 = index.directions.tolist().index([0, 4])
    d_down1 = index.directions.tolist().index([1, 0])
    assert src_label[0, 0, 0] == 0 and dst_label[0, d_right4, 0] == 3 and dst_label[0, d_down1, 0] == 0
    # source (1, 5) looks down onto the ignored pixel (2, 5)
    assert src_label[0, 0, 5] == 0 and dst_label[0, d_down1, 5] == 255
    flat = labels.view(-1)
    assert torch.equal(dst_label[0], flat[indices.dst]) and torch.equal(src_label[0, 0], flat[indices.src])
