"""Recovery after a crash, as README's "After a crash" tells it: a local workflow killed with SIGKILL mid-training
(Snakemake and its job together, as a lost machine or session would), then `--unlock` and the same command again.
The default profile reruns the incomplete job, which resumes from its epoch checkpoint with the whole loss history."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET = "results/test/bas_seed/model.pt"


def smk(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(workdir)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


def test_kill_9_then_unlock_then_the_same_command_resumes_training(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    # ~20 s of BAS training on the tiny set, so that the kill falls between two epochs
    (tmp_path / "override.yaml").write_text(yaml.safe_dump({"bas": {"epochs": 30, "max_images": None}}))
    args = (TARGET, "--cores", "2", "--configfile", "configs/test.yaml", "override.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args, "--snakefile",
                             str(ROOT / "workflow" / "Snakefile"), "--directory", str(tmp_path)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    partial = tmp_path / "results" / "test" / "bas_seed" / "model.pt.partial"
    deadline = time.time() + 300
    while not partial.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert partial.is_file(), "no epoch checkpoint before the deadline"
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the training job die together
    proc.wait()
    assert not (tmp_path / TARGET).exists()

    locked = smk(tmp_path, *args)
    assert locked.returncode != 0 and "LockException" in locked.stdout + locked.stderr
    unlock = smk(tmp_path, "--unlock", "--configfile", "configs/test.yaml", "override.yaml")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    again = smk(tmp_path, *args)  # the same command: the default profile reruns the incomplete job
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log = (tmp_path / "results" / "test" / "logs" / "train_bas.log").read_text()
    assert re.search(r"resuming from .*model\.pt\.partial after epoch \d+", log), log[-2000:]
    history = [json.loads(line) for line in
               (tmp_path / "results" / "test" / "bas_seed" / "loss_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in history] == list(range(1, 31))
