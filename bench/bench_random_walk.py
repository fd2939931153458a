"""Benchmark: IRN's dense random walk (the reference formulation) vs irn.random_walk at VOC size.

Synthetic but realistic inputs at stride 4 of a 375 x 500 image (94 x 125): K smooth blob-like class maps
(max-normalised, raised to 1.5 as BAS does) and a boundary map with thin high ridges around the objects over a
low smooth floor. For each image: time of the dense float32 formulation (tests/test_random_walk.py's
``dense_random_walk_reference``, which builds the N x N matrix and squares it ``exp_times`` times) and of both sparse
methods; peak memory; relative difference of the walked maps; fraction of identical pseudo-mask pixels after the
reference post-processing (x4 bilinear, one global max, background plane 0.22, argmax).

    PYTHONPATH=. python bench/bench_random_walk.py --images 1 [--device cpu|cuda] [--threads 1] [--dense-threads 2]
        [--classes 2] [--size 94 125] [--skip-dense]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from irn.path_index import build_path_index  # noqa: E402
from irn.random_walk import (METHODS, random_walk, stencil_offsets, stencil_weights, transition_csr,  # noqa: E402
                             walk_to_label_indices)
from tests.test_random_walk import dense_random_walk_reference  # noqa: E402

BG_THRESHOLD = 0.22
CAM_POWER = 1.5


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an (h, w) map (reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=image.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    blurred = F.pad(image[None, None], (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(blurred, taps.view(1, 1, 1, -1))
    return F.conv2d(blurred, taps.view(1, 1, -1, 1))[0, 0]


def synthetic_inputs(k: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K elliptic blob cams (float32, max 1, ** 1.5) and a ridge boundary in [0, 1] traced around each blob."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    cams, ridges = [], torch.zeros(height, width)
    for _ in range(k):
        cy, cx = (torch.rand(2, generator=generator) * torch.tensor([height * 0.6, width * 0.6])
                  + torch.tensor([height * 0.2, width * 0.2]))
        ry, rx = torch.rand(2, generator=generator) * torch.tensor([height * 0.2, width * 0.2]) + 8
        radial = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2
        blob = torch.exp(-radial) + 0.3 * torch.exp(-((ys - cy - ry / 2) / (ry / 3)) ** 2
                                                    - ((xs - cx) / (rx / 3)) ** 2)
        cams.append(blob / blob.max())
        ridges = torch.maximum(ridges, torch.exp(-((radial.sqrt() - 1.15) * min(ry, rx).item() / 0.8) ** 2))
    floor = gaussian_blur(torch.rand(height, width, generator=generator), sigma=3.0)
    floor = 0.02 + 0.1 * (floor - floor.min()) / (floor.max() - floor.min())
    boundary = torch.clamp(torch.maximum(floor, 0.95 * gaussian_blur(ridges, sigma=0.6) / ridges.max()), 0, 1)
    return torch.stack(cams) ** CAM_POWER, boundary


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[torch.Tensor, float]:
    """Result and median wall time over ``repeats`` runs (seconds)."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return result, sorted(times)[len(times) // 2]


def peak_memory_mb(device: torch.device) -> float:
    """Peak process RSS (CPU) or peak allocated CUDA memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def operator_sizes_mb(boundary: torch.Tensor) -> dict:
    """Size of the walk operator: dense N x N float32 vs the CSR matrix (values + int32 indices) and stencil weights."""
    path_index = build_path_index(5)
    weights = stencil_weights(boundary, path_index, beta=10)
    csr = transition_csr(weights, stencil_offsets(path_index))
    n_pixels = boundary.numel()
    csr_bytes = sum(t.numel() * t.element_size() for t in (csr.values(), csr.col_indices(), csr.crow_indices()))
    return {"n_pixels": n_pixels, "nnz": csr.values().numel(), "dense_matrix_mb": n_pixels ** 2 * 4 / 2 ** 20,
            "csr_mb": csr_bytes / 2 ** 20, "stencil_weights_mb": weights.numel() * weights.element_size() / 2 ** 20}


def bench_image(seed: int, args, device: torch.device) -> dict:
    """All measurements for one synthetic image (sparse with ``--threads``, dense with ``--dense-threads``)."""
    height, width = args.size
    cams, boundary = synthetic_inputs(args.classes, height, width, seed)
    cams, boundary = cams.to(device), boundary.to(device)
    image_size = (height * 4, width * 4)
    row: dict = {"seed": seed, "size": [height, width], "classes": args.classes, **operator_sizes_mb(boundary)}
    walked = {}
    torch.set_num_threads(args.threads)
    for method in METHODS:
        walked[method], row[f"{method}_s"] = timed(lambda: random_walk(cams, boundary, method=method), device,
                                                   args.repeats)
    row["sparse_peak_mb"] = peak_memory_mb(device)
    labels = walk_to_label_indices(walked["csr"], image_size, BG_THRESHOLD)
    row["fg_fraction"] = (labels > 0).float().mean().item()
    if args.skip_dense:
        return row
    torch.set_num_threads(args.dense_threads)
    dense, row["dense_s"] = timed(lambda: dense_random_walk_reference(cams, boundary), device, 1)
    row["dense_peak_mb"] = peak_memory_mb(device)
    dense_labels = walk_to_label_indices(dense, image_size, BG_THRESHOLD)
    scale = dense.abs().max()
    for method in METHODS:
        row[f"{method}_max_rel_diff"] = ((walked[method] - dense).abs().max() / scale).item()
        row[f"{method}_identical_pixels"] = (walk_to_label_indices(walked[method], image_size, BG_THRESHOLD)
                                             == dense_labels).float().mean().item()
        row[f"{method}_speedup"] = row["dense_s"] / row[f"{method}_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(94, 125), metavar=("H4", "W4"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the sparse walk")
    parser.add_argument("--dense-threads", type=int, default=2, help="torch CPU threads for the dense walk")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each sparse method (median)")
    parser.add_argument("--skip-dense", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "dense_threads": args.dense_threads,
                      "baseline_peak_mb": peak_memory_mb(device), "device": str(device),
                      "cuda_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}),
          flush=True)
    for seed in range(args.images):
        print(json.dumps(bench_image(seed, args, device)), flush=True)


if __name__ == "__main__":
    main()
