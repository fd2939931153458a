"""Give a local job its own GPU(s): ``python -m wsss_common.gpu_slot --gpus N -- <command ...>``.

Snakemake's ``--resources gpu=N`` only counts GPUs; it never tells a job which device to use. This wrapper takes a
non-blocking ``flock`` on N of the lock files ``gpu<i>.lock`` (i from ``GPU_IDS``, default: every visible GPU),
exports ``CUDA_VISIBLE_DEVICES`` and execs the command, holding the locks for the command's lifetime (the kernel
releases them when it exits, so a crash leaves no stale lock). Because Snakemake never starts more GPU jobs than
``--resources gpu=N`` allows, a free slot exists unless something outside the workflow holds the GPUs.

It execs the command unchanged when ``--gpus 0``, when no GPU is present, or when ``CUDA_VISIBLE_DEVICES`` was
already set by a scheduler (SLURM sets it for each job).
"""
from __future__ import annotations

import argparse
import fcntl
import glob
import os
import sys
import time

# Device nodes a GPU that torch.cuda can see leaves behind: NVIDIA's driver (also inside containers), WSL2's
# /dev/dxg, ROCm's /dev/kfd. Without any of them torch.cuda.device_count() is 0, and the ~2 s of importing torch
# per job (six jobs on the demo's critical path) is skipped.
GPU_DEVICE_NODES = ("/dev/nvidia[0-9]*", "/proc/driver/nvidia/gpus/*", "/dev/dxg", "/dev/kfd")


def visible_gpu_ids() -> list[str]:
    if os.environ.get("GPU_IDS"):
        return [g for g in os.environ["GPU_IDS"].split(",") if g.strip()]
    if not any(glob.glob(pattern) for pattern in GPU_DEVICE_NODES):
        return []
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def acquire(n: int, ids: list[str], lock_dir: str, poll: float = 0.5, timeout: float | None = None) -> list[str]:
    """Lock ``n`` of ``ids`` (waiting while all are taken); return the ids. The lock fds stay open (inheritable)."""
    os.makedirs(lock_dir, exist_ok=True)
    start = time.monotonic()
    while True:
        got: list[tuple[str, int]] = []
        for gid in ids:
            fd = os.open(os.path.join(lock_dir, f"gpu{gid}.lock"), os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            got.append((gid, fd))
            if len(got) == n:
                for _, f in got:
                    os.set_inheritable(f, True)
                return [g for g, _ in got]
        for _, f in got:
            os.close(f)
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no {n} free GPU slots among {ids} after {timeout}s")
        time.sleep(poll)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: python -m wsss_common.gpu_slot --gpus N -- command ...")
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="wsss_common.gpu_slot")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--lock-dir", default=os.environ.get("GPU_LOCK_DIR", "/tmp/wsss-gpu-locks"))
    args = p.parse_args(argv[:cut])
    cmd = argv[cut + 1:]
    if not cmd:
        raise SystemExit("gpu_slot: no command given after --")
    if args.gpus > 0 and "CUDA_VISIBLE_DEVICES" in os.environ:
        note(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} set by the scheduler; no local slot taken")
    elif args.gpus > 0:
        ids = visible_gpu_ids()
        if ids:
            if args.gpus > len(ids):
                raise SystemExit(f"gpu_slot: job asks for {args.gpus} GPUs but only {len(ids)} exist ({ids})")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(acquire(args.gpus, ids, args.lock_dir))
            note(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} from local slots in {args.lock_dir}")
        else:
            note("no GPU visible; running without one")
    os.execvp(cmd[0], cmd)


def note(message: str) -> None:
    """One line for the rule's log (stderr): which devices the job got and from whom, with the time."""
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} gpu_slot: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
