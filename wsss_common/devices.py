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


def cpu_summary(cpuinfo: str, nproc: int, simd: str | None = None) -> str:
    """One line naming the CPU from the text of /proc/cpuinfo: model name, family/model (a VM's model name is often
    only "AMD EPYC", which two machines of different speed share; bench/RESULTS.md session 10), cores, and the vector
    instructions torch dispatches to (``simd``: torch.backends.cpu.get_cpu_capability(), e.g. AVX2 or AVX512)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    parts = [fields.get("model name") or fields.get("Hardware") or fields.get("Model") or "unknown CPU"]
    if "cpu family" in fields and "model" in fields:
        parts.append(f"family {fields['cpu family']} model {fields['model']}")
    parts.append(f"{nproc} cores")
    if fields.get("cpu MHz"):
        parts.append(f"{float(fields['cpu MHz']):.0f} MHz")
    if simd:
        parts.append(f"torch {simd}")
    return ", ".join(parts)


def describe_machine(include_gpu: bool = True) -> str:
    """``cpu_summary`` of this machine, plus the GPU's name when torch sees one (and ``include_gpu``)."""
    from pathlib import Path

    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        cpuinfo = f"model name: {platform.processor() or platform.machine()}"
    simd = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    line = cpu_summary(cpuinfo, os.cpu_count() or 1, simd)
    if include_gpu and torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return line
