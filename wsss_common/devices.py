"""Device selection: the one place that turns the config's ``device`` (auto | cpu | cuda) into a torch.device."""
from __future__ import annotations

import os


def select_device(spec: str = "auto"):
    """``auto`` -> cuda:0 when a GPU is visible, else cpu; ``cuda`` without a GPU is an error, not a silent fallback.

    The GPU a job sees is chosen outside (CUDA_VISIBLE_DEVICES, set by SLURM or ``wsss_common.gpu_slot``), so
    inside a job the device is always cuda:<LOCAL_RANK> (0 for single-process jobs).
    """
    import torch

    if spec not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {spec!r}")
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("config device: cuda, but torch sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def set_threads(n: int | None) -> None:
    """Cap torch's intra-op threads at the rule's ``threads`` so parallel jobs do not oversubscribe the cores."""
    import torch

    if n and n > 0:
        torch.set_num_threads(int(n))
