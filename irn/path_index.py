"""IRN's path index: which pixel pairs are compared, and along which lattice path.

A pair is a source pixel and a destination at offset (dy, dx) from it. The offsets ("search directions") cover a
half-plane of the disc of radius r, so every unordered pair within the disc is counted once:
(0, dx) for dx = 1..r-1, then (dy, dx) for dy = 1..r-1 and |dx| <= r-1 with dx² + dy² < r² (34 directions for r = 5,
152 for r = 10). The path of a direction is every lattice point of the src–dst bounding box whose distance from the
src–dst line is < 1, sorted so that the destination comes first (stable sort by decreasing |y| + |x|). Directions are
grouped by path length, shortest first, keeping their search order inside a group; this grouped order is the order
of the direction axis everywhere (affinities, labels, destination indices).

On a feature map of size (h, w) the sources are the window rows [0, h - r + 1), cols [r - 1, w - r + 1), so every
destination of every source lies inside the map. The affinity of a pair is ``1 - max(edge on its path)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PathIndex:
    """The size-independent part: the radius, the directions and their paths in the reference's grouped order.

    ``directions``: int64 (D, 2) of (dy, dx); ``path_groups``: one int64 array (n_dirs, path_len, 2) per path length
    (ascending), each path with the destination first; the concatenated groups are in ``directions`` order.
    """

    radius: int
    directions: np.ndarray
    path_groups: tuple[np.ndarray, ...]

    @property
    def reach(self) -> int:
        """Largest |dy| or |dx| of any direction (``radius_floor`` in the reference): r - 1."""
        return self.radius - 1


@dataclass(frozen=True)
class PathIndices:
    """Flat (row-major) indices into an (h, w) map for the pairs of a :class:`PathIndex`.

    ``src``: (S,) source pixels (the window, row-major); ``dst``: (D, S) destination of each direction and source;
    ``path_groups``: per path-length group a (n_dirs, path_len, S) tensor of the path points (destination first).
    ``window``: (rows, cols) of the source window, S = rows * cols; ``size``: (h, w).
    """

    size: tuple[int, int]
    window: tuple[int, int]
    src: torch.Tensor
    dst: torch.Tensor
    path_groups: tuple[torch.Tensor, ...]


def search_directions(radius: int) -> list[tuple[int, int]]:
    """The half-plane offsets (dy, dx) of a radius in the reference's search order (before grouping by length)."""
    if radius < 2:
        raise ValueError(f"radius must be >= 2, got {radius}")
    directions = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        for dx in range(-radius + 1, radius):
            if dx * dx + dy * dy < radius * radius:
                directions.append((dy, dx))
    return directions


def direction_path(dy: int, dx: int) -> np.ndarray:
    """Lattice points (y, x) of the bounding box of (0, 0)–(dy, dx) within distance < 1 of the line through them.

    Both endpoints are included; the destination (dy, dx) comes first, the rest keeps row-major order within equal
    |y| + |x| (Python's stable sort, as the reference). Returns int64 (L, 2).
    """
    length_sq = dy * dy + dx * dx
    points = []
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            cross = dy * x - dx * y          # distance² = cross² / length² (exact integer test)
            if cross * cross < length_sq:
                points.append((y, x))
    points.sort(key=lambda p: -abs(p[0]) - abs(p[1]))
    return np.asarray(points, dtype=np.int64).reshape(-1, 2)


def build_path_index(radius: int) -> PathIndex:
    """Directions and paths of a radius, grouped by path length (shortest first) as the reference's PathIndex."""
    by_length: dict[int, list[np.ndarray]] = {}
    for dy, dx in search_directions(radius):
        path = direction_path(dy, dx)
        by_length.setdefault(len(path), []).append(path)
    path_groups = tuple(np.stack(by_length[length]) for length in sorted(by_length))
    directions = np.concatenate([group[:, 0] for group in path_groups], axis=0)
    return PathIndex(radius=radius, directions=directions, path_groups=path_groups)


def source_window(path_index: PathIndex, height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the source pixels on an (h, w) map: [0, h - reach) x [reach, w - reach)."""
    reach = path_index.reach
    if height <= reach or width <= 2 * reach:
        raise ValueError(f"map {height}x{width} too small for radius {path_index.radius} "
                         f"(needs h > {reach}, w > {2 * reach})")
    return slice(0, height - reach), slice(reach, width - reach)


def path_indices(path_index: PathIndex, height: int, width: int,
                 device: torch.device | str | None = None) -> PathIndices:
    """Flat indices of sources, destinations and path points on an (h, w) map (int64 tensors on ``device``).

    A point at offset (dy, dx) from a source s has the flat index s + dy * w + dx; the window keeps it on the map.
    """
    rows, cols = source_window(path_index, height, width)
    src = (torch.arange(rows.start, rows.stop)[:, None] * width + torch.arange(cols.start, cols.stop)[None, :])
    src = src.reshape(-1).to(device)
    groups = []
    for group in path_index.path_groups:
        flat_offsets = torch.as_tensor(group[..., 0] * width + group[..., 1], device=device)
        groups.append(flat_offsets[:, :, None] + src[None, None, :])
    dst = torch.cat([group[:, 0] for group in groups], dim=0)
    window = (rows.stop - rows.start, cols.stop - cols.start)
    return PathIndices(size=(height, width), window=window, src=src, dst=dst, path_groups=tuple(groups))


def _flatten_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) or (B, 1, h, w) -> (B, h * w), checking the spatial size."""
    if tuple(maps.shape[-2:]) != tuple(size):
        raise ValueError(f"map size {tuple(maps.shape[-2:])} does not match the indices' size {tuple(size)}")
    return maps.reshape(maps.shape[0], -1)


def edge_to_affinity(edge: torch.Tensor, indices: PathIndices) -> torch.Tensor:
    """Affinity ``1 - max(edge on path)`` of every pair: edge (B, h, w) or (B, 1, h, w) -> (B, D, S)."""
    flat_edge = _flatten_maps(edge, indices.size)
    affinities = []
    for group in indices.path_groups:
        n_dirs, path_len, n_src = group.shape
        on_path = flat_edge.index_select(1, group.reshape(-1)).view(flat_edge.shape[0], n_dirs, path_len, n_src)
        affinities.append(1 - on_path.amax(dim=2))
    return torch.cat(affinities, dim=1)


def pair_endpoints(values: torch.Tensor, indices: PathIndices) -> tuple[torch.Tensor, torch.Tensor]:
    """Values at both ends of every pair: values (B, h, w) or (B, 1, h, w) -> (src (B, 1, S), dst (B, D, S)).

    For a label map this gives the (source label, destination label) of each direction, from which the training
    step derives its positive/negative pair masks; for a displacement channel, the pair difference.
    """
    flat_values = _flatten_maps(values, indices.size)
    src = flat_values.index_select(1, indices.src).unsqueeze(1)
    dst = flat_values.index_select(1, indices.dst.reshape(-1)).view(flat_values.shape[0], *indices.dst.shape)
    return src, dst
