"""wsss_common.gpu_slot hands concurrent jobs distinct GPUs (tested with fake ids: the locks are plain files)."""
import os
import subprocess
import sys
import time

PRINT_AND_SLEEP = "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); time.sleep({})"


def wrapped(tmp_path, gpus, seconds, env_extra=None):
    env = {**os.environ, "GPU_IDS": "0,1", "GPU_LOCK_DIR": str(tmp_path / "locks"), **(env_extra or {})}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "wsss_common.gpu_slot", "--gpus", str(gpus), "--",
                             sys.executable, "-c", PRINT_AND_SLEEP.format(seconds)],
                            env=env, stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_distinct_gpus_and_a_third_waits(tmp_path):
    a, b = wrapped(tmp_path, 1, 1.5), wrapped(tmp_path, 1, 1.5)
    time.sleep(0.5)
    t0 = time.monotonic()
    c = wrapped(tmp_path, 1, 0)
    ids = {a.communicate()[0].strip(), b.communicate()[0].strip()}
    assert ids == {"0", "1"}
    assert c.communicate()[0].strip() in {"0", "1"}
    assert time.monotonic() - t0 > 0.5  # it waited for a slot


def test_two_gpu_job_and_passthrough(tmp_path):
    assert wrapped(tmp_path, 2, 0).communicate()[0].strip() == "0,1"
    assert wrapped(tmp_path, 0, 0).communicate()[0].strip() == "None"          # CPU job: untouched
    p = wrapped(tmp_path, 1, 0, {"CUDA_VISIBLE_DEVICES": "3"})                 # set by SLURM: untouched
    assert p.communicate()[0].strip() == "3"


def test_asking_for_more_gpus_than_exist_fails(tmp_path):
    p = wrapped(tmp_path, 3, 0)
    p.communicate()
    assert p.returncode != 0


def test_without_gpu_device_nodes_torch_is_not_consulted(tmp_path, monkeypatch):
    # torch.cuda is asked only where a GPU device node exists; elsewhere the ~2 s torch import per job is skipped
    import types

    from wsss_common import gpu_slot

    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(device_count=lambda: 3))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.delenv("GPU_IDS", raising=False)
    monkeypatch.setattr(gpu_slot, "GPU_DEVICE_NODES", (str(tmp_path / "nvidia[0-9]*"),))
    assert gpu_slot.visible_gpu_ids() == []
    (tmp_path / "nvidia0").touch()
    assert gpu_slot.visible_gpu_ids() == ["0", "1", "2"]
