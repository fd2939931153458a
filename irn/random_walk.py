"""IRN's random walk (``propagate_to_edge``) computed sparsely and exactly.

The reference builds a dense N x N affinity A (N = h * w stride-4 pixels): A[i, i] = 1, A[i, j] = A[j, i] =
``1 - max(boundary on the path i -> j)`` for j - i one of the radius's search directions, 0 elsewhere; it raises A
element-wise to ``beta``, normalises the columns (T = A D^-1 with D = diag(column sums)), squares T ``exp_times``
times and returns ``x @ T^(2^exp_times)`` for x = cams * (1 - boundary) flattened to K x N.

Here T is never formed densely. Each of its columns has at most 1 + 2 * D non-zeros (69 at radius 5), so one step
``x <- x @ T`` is a 69-tap spatially varying stencil: new x[q] = sum over offsets o of W[o, q] * x[q + o] with
W[o, q] = A[q, q + o] / (sum over o' of A[q, q + o']) (A is symmetric, so column q of T is row q of A, normalised).
2^exp_times such steps equal the reference's repeated squaring (matrix powers associate). Two interchangeable
executions of the step are provided: a CSR sparse matrix product (default; fastest measured on CPU) and a
shifted-slice stencil. Memory is O(N * 69) either way, and everything runs on the inputs' device.

Padding: the reference pads the boundary by ``radius`` with 1.0 on the left, right and bottom (not the top), computes
the affinities on the padded map and crops the padding off the dense matrix. Every path between two in-map pixels
stays inside their bounding box, hence inside the map, so the padding only decides pairs with one end outside the
map, which the crop drops: here such pairs are simply absent (weight 0), and each column normalises over its in-map
neighbours.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from irn.path_index import PathIndex, build_path_index, edge_to_affinity, path_indices

METHODS = ("csr", "stencil")


def pad_boundary(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """(h, w) -> (h + radius, w + 2 * radius): 1.0 added on the left, right and bottom, as the reference."""
    return F.pad(boundary[None, None], (radius, radius, 0, radius), mode="constant", value=1.0)[0, 0]


def neighbour_affinities(boundary: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
    """Affinity of each pixel q to q + d for every direction d: (h, w) -> (D, h, w), 0 where q + d is off the map.

    Computed as the reference does, on the padded boundary with the padded map's path indices, then cropped to the
    pixels of the original map (which in the padded map sit at rows [0, h), cols [radius, radius + w)).
    """
    height, width = boundary.shape
    radius = path_index.radius
    padded = pad_boundary(boundary, radius)
    indices = path_indices(path_index, *padded.shape, device=boundary.device)
    affinity = edge_to_affinity(padded[None], indices)[0].view(-1, *indices.window)
    col0 = radius - path_index.reach                  # window column of padded column `radius`
    affinity = affinity[:, :height, col0:col0 + width]
    return affinity * destination_inside(path_index, height, width, boundary.device).to(affinity.dtype)


def destination_inside(path_index: PathIndex, height: int, width: int, device=None) -> torch.Tensor:
    """Bool (D, h, w): whether pixel q + d lies on the (h, w) map, for each direction d."""
    directions = torch.as_tensor(path_index.directions, device=device)
    rows = torch.arange(height, device=device)[None, :, None] + directions[:, 0, None, None]
    cols = torch.arange(width, device=device)[None, None, :] + directions[:, 1, None, None]
    return (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)


def stencil_offsets(path_index: PathIndex) -> torch.Tensor:
    """The stencil's (dy, dx) offsets, int64 (1 + 2 * D, 2): the pixel itself, the directions, their negatives."""
    directions = torch.as_tensor(path_index.directions)
    return torch.cat([torch.zeros(1, 2, dtype=directions.dtype), directions, -directions])


def shift_maps(maps: torch.Tensor, offsets: torch.Tensor, reach: int) -> torch.Tensor:
    """out[n, y, x] = maps[n, y - dy_n, x - dx_n] (0 where that is off the map); |dy|, |dx| <= reach."""
    height, width = maps.shape[-2:]
    padded = F.pad(maps, (reach, reach, reach, reach))
    return torch.stack([padded[n, reach - dy:reach - dy + height, reach - dx:reach - dx + width]
                        for n, (dy, dx) in enumerate(offsets.tolist())])


def stencil_weights(boundary: torch.Tensor, path_index: PathIndex, beta: float) -> torch.Tensor:
    """Normalised stencil weights W (1 + 2 * D, h, w) in ``stencil_offsets`` order: W[o, q] = T[q + o, q].

    A[q, q] = 1, A[q, q + d] = aff_d(q) ** beta, A[q, q - d] = aff_d(q - d) ** beta; each pixel's weights are divided
    by their sum, the column sum of A (A is symmetric).
    """
    affinity = neighbour_affinities(boundary, path_index)
    backward = shift_maps(affinity, torch.as_tensor(path_index.directions), path_index.reach)
    self_affinity = torch.ones_like(affinity[:1])
    powered = torch.cat([self_affinity, affinity, backward]) ** beta
    return powered / powered.sum(dim=0, keepdim=True)


def walk_stencil(x: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor, reach: int,
                 steps: int) -> torch.Tensor:
    """Apply ``x <- x @ T`` ``steps`` times as shifted-slice accumulation: x (K, h, w) -> (K, h, w)."""
    height, width = x.shape[-2:]
    offset_list = offsets.tolist()
    for _ in range(steps):
        padded = F.pad(x, (reach, reach, reach, reach))
        out = torch.zeros_like(x)
        for weight, (dy, dx) in zip(weights, offset_list):
            out.addcmul_(weight, padded[:, reach + dy:reach + dy + height, reach + dx:reach + dx + width])
        x = out
    return x


def transition_csr(weights: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """T transposed as a sparse CSR (N, N) matrix: row q holds W[o, q] at column q + o for the in-map offsets.

    Columns within a row are ascending because the offsets are taken in order of their flat step dy * w + dx.
    """
    _, height, width = weights.shape
    device = weights.device
    offsets = offsets.to(device)
    order = torch.argsort(offsets[:, 0] * width + offsets[:, 1])
    offsets, weights = offsets[order], weights[order]
    rows = torch.arange(height, device=device)[:, None, None] + offsets[None, None, :, 0]
    cols = torch.arange(width, device=device)[None, :, None] + offsets[None, None, :, 1]
    inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).reshape(height * width, -1)
    targets = (rows * width + cols).reshape(height * width, -1)
    values = weights.permute(1, 2, 0).reshape(height * width, -1)
    crow = F.pad(torch.cumsum(inside.sum(dim=1), dim=0), (1, 0))
    index_dtype = torch.int32 if crow[-1] < 2 ** 31 else torch.int64   # int32 indices: ~1.7x faster CPU product
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow.to(index_dtype), targets[inside].to(index_dtype), values[inside],
                                       size=(height * width, height * width), check_invariants=False)


def walk_csr(x: torch.Tensor, transition_t: torch.Tensor, steps: int) -> torch.Tensor:
    """Apply ``x <- x @ T`` ``steps`` times as ``T^t @ x^t`` with a CSR T^t: x (K, h, w) -> (K, h, w)."""
    columns = x.reshape(x.shape[0], -1).t().contiguous()
    for _ in range(steps):
        columns = transition_t @ columns
    return columns.t().reshape(x.shape)


def random_walk(cams: torch.Tensor, boundary: torch.Tensor, *, radius: int = 5, beta: float = 10,
                exp_times: int = 8, method: str = "csr") -> torch.Tensor:
    """The reference's ``propagate_to_edge``: ``(cams * (1 - boundary)) @ T^(2^exp_times)``, sparsely.

    cams: (K, h, w); boundary: (h, w) in [0, 1]; returns (K, h, w) in the dtype and on the device of ``cams``.
    ``method``: "csr" (sparse matrix product per step) or "stencil" (shifted-slice accumulation); same result.
    """
    if cams.dim() != 3 or boundary.shape != cams.shape[-2:]:
        raise ValueError(f"need cams (K, h, w) and boundary (h, w); got {tuple(cams.shape)} and "
                         f"{tuple(boundary.shape)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    boundary = boundary.to(device=cams.device, dtype=cams.dtype)
    path_index = build_path_index(radius)
    weights = stencil_weights(boundary, path_index, beta)
    offsets = stencil_offsets(path_index)
    x = cams * (1 - boundary)
    steps = 2 ** exp_times
    if method == "csr":
        return walk_csr(x, transition_csr(weights, offsets), steps)
    return walk_stencil(x, weights, offsets, path_index.reach, steps)


def walk_to_label_indices(walked: torch.Tensor, image_size: tuple[int, int], bg_threshold: float) -> torch.Tensor:
    """The reference's post-processing: x4 bilinear upsample (align_corners=False), crop to (H, W), divide by the
    single global max, prepend a background plane ``bg_threshold``, argmax. (K, h, w) -> int64 (H, W) in 0..K;
    index k > 0 is the k-th channel of ``walked`` (map through ``[0, *keys]`` for class ids)."""
    height, width = image_size
    upsampled = F.interpolate(walked[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    upsampled = upsampled[:, :height, :width]
    upsampled = upsampled / upsampled.max().clamp_min(1e-12)  # an all-zero walk stays zero instead of NaN
    with_background = F.pad(upsampled, (0, 0, 0, 0, 1, 0), value=bg_threshold)
    return with_background.argmax(dim=0)
