"""The workflow on a real SLURM: a one-node cluster with 2 fake GPUs (tests/slurm/start-cluster.sh), the tiny DAG
submitted through ``--executor slurm`` with the project's profile (workflow/profiles/slurm), then a SLURM job killed
mid-training (scancel) and the rerun resuming from its checkpoint.

Only the sizes of the profile are overridden on the command line (threads, memory, runtime: this node has 2 cores),
plus the test-cluster settings a site without slurmdbd needs (squeue as the status command, fast first poll) and
keeping the plugin's job logs. Needs root: the test installs Debian's slurmctld, slurmd, slurm-client and munge
when they are missing, and skips, saying why, where it cannot.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import planned_rules

ROOT = Path(__file__).resolve().parents[1]
SLURM_PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
HEAVY = ["pretrain_cam", "train_bas", "train_irn", "train_segmenter", "export_seeds", "make_ir_labels", "make_pseudo_masks",
         "predict_val"]
GPU_RULES = {"pretrain_cam": 2, "train_bas": 2, "train_irn": 1, "train_segmenter": 1, "export_seeds": 1, "make_pseudo_masks": 1,
             "predict_val": 1}
# sizes for a 2-core node; everything else comes from workflow/profiles/slurm/profile.yaml
SIZES = ["--jobs", "4", "--set-threads", *[f"{r}=1" for r in HEAVY],
         "--set-resources", *[f"{r}:mem_mb=2500" for r in HEAVY], "--default-resources", "mem_mb=1000", "runtime=30"]
TEST_CLUSTER = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                "--slurm-keep-successful-logs"]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def test_every_rule_that_asks_for_a_gpu_is_sized_in_the_profile(tmp_path):
    """The profile sizes threads and memory per rule; a GPU rule it misses (pretrain_cam once) is submitted with the
    rule's own threads and the default 4 GB, and on a small node waits in the queue for ever. No cluster needed: the
    demo's dry run (with the CAM fused, so train_cam is in it) names every GPU rule of the DAG."""
    (tmp_path / "fuse_cam.yaml").write_text("seeds:\n  fuse_cam: true\n")
    p = run([sys.executable, "-m", "snakemake", "-n", "--cores", "64", "--configfile", "configs/demo.yaml",
             str(tmp_path / "fuse_cam.yaml"), "--snakefile", str(ROOT / "workflow" / "Snakefile"),
             "--directory", str(tmp_path)], cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    gpu_rules, rule = set(), None
    for line in p.stdout.splitlines():
        if re.match(r"^(local)?rule \S+:$", line):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:") and re.search(r"\bgpu=", line):
            gpu_rules.add(rule)
    assert {"pretrain_cam", "train_bas", "train_cam", "train_irn", "train_segmenter", "export_seeds"} <= gpu_rules
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "profile.yaml").read_text())
    assert gpu_rules <= set(profile["set-threads"]), gpu_rules - set(profile["set-threads"])
    assert gpu_rules <= set(profile["set-resources"]), gpu_rules - set(profile["set-resources"])


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test needs root: it installs and starts slurmctld, slurmd and munge")
    if not all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        update = run(["apt-get", "update"])
        install = run(["apt-get", "install", "-y", "--no-install-recommends", *SLURM_PACKAGES],
                      env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if install.returncode != 0:
            pytest.skip(f"could not install {' '.join(SLURM_PACKAGES)} with apt-get (update rc {update.returncode}): "
                        f"{install.stderr[-500:]}")
    start = run(["bash", str(ROOT / "tests" / "slurm" / "start-cluster.sh")], env={**os.environ, "FAKE_GPUS": "2"})
    if start.returncode != 0:
        run(["bash", str(ROOT / "tests" / "slurm" / "stop-cluster.sh")])
        raise AssertionError(f"the local SLURM did not start:\n{start.stdout[-3000:]}\n{start.stderr[-3000:]}")
    yield start.stdout
    run(["bash", str(ROOT / "tests" / "slurm" / "stop-cluster.sh")])


def smk(workdir, *args, check=True, **kw):
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(workdir), "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm")]
    p = run(cmd, cwd=workdir, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-6000:]}\n"
                             f"{p.stderr[-6000:]}")
    return p


def make_workdir(tmp_path, override):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    return tmp_path


def sbatch_calls(output: str) -> dict[str, list[str]]:
    """rule -> the sbatch command lines the plugin logged (--verbose) for its jobs."""
    calls: dict[str, list[str]] = {}
    for line in output.splitlines():
        if "sbatch call:" in line:
            m = re.search(r"--comment '?\"?rule_([A-Za-z_]+?)(?:_wildcards_[^'\" ]*)?['\" ]", line)
            if m:
                calls.setdefault(m.group(1), []).append(line)
    return calls


def gpu_notes(logs: Path) -> dict[str, tuple[float, float, str]]:
    """log name -> (start, end, CUDA_VISIBLE_DEVICES) of every job whose gpu_slot line says the scheduler set it."""
    found = {}
    for log in logs.glob("*.log"):
        m = re.search(r"^(\S+) gpu_slot: CUDA_VISIBLE_DEVICES=(\S*) set by the scheduler", log.read_text(), re.M)
        if m:
            start = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
            found[log.stem] = (start, log.stat().st_mtime, m.group(2))
    return found


# ---- the whole tiny DAG through SLURM ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    # device auto: GPU rules ask SLURM for gpu=N (the fake GPUs); torch sees no CUDA, so they compute on the CPU.
    # bas.gpus 2: one SLURM job with 2 GPUs that runs torchrun with 2 DDP processes.
    override = {"device": "auto", "bas": {"gpus": 2}, "irn": {"gpus": 1}}
    work = make_workdir(tmp_path_factory.mktemp("slurm_dag"), override)
    started = time.time()
    p = smk(work, "all", "--configfile", "configs/test.yaml", "override.yaml", "--verbose", *TEST_CLUSTER, *SIZES)
    return {"work": work, "out": p.stdout + p.stderr, "seconds": time.time() - started}


def test_every_job_ran_as_a_slurm_job_with_the_profile_resources(slurm_run):
    out, work = slurm_run["out"], slurm_run["work"]
    calls = sbatch_calls(out)
    for rule in HEAVY:
        assert rule in calls, f"{rule} was not submitted to SLURM"
    # every submitted job has a SLURM log of its own (kept with --slurm-keep-successful-logs) and succeeded
    slurm_logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(slurm_logs) == sum(len(v) for v in calls.values())
    assert (work / "results" / "test" / "metrics" / "val_miou.json").is_file()
    # the profile's own settings reached the submissions: runtime from default-resources, memory as sized
    assert all("-t 30" in c or "--time=30" in c or "-t '30'" in c for cs in calls.values() for c in cs)
    assert all("--mem 2500" in c or "--mem=2500" in c for c in calls["train_bas"])


def test_gpu_jobs_got_their_own_devices_from_slurm_and_the_local_wrapper_stepped_aside(slurm_run):
    calls = sbatch_calls(slurm_run["out"])
    for rule, n in GPU_RULES.items():
        assert all(f"--gpus={n}" in c for c in calls[rule]), (rule, calls[rule])
    notes = gpu_notes(slurm_run["work"] / "results" / "test" / "logs")
    expected_logs = {"pretrain_cam", "train_bas", "train_irn", "train_segmenter", "export_seeds_0", "export_seeds_1",
                     "make_pseudo_masks_0", "make_pseudo_masks_1", "predict_val_0", "predict_val_1"}
    assert set(notes) == expected_logs
    assert notes["train_bas"][2] in ("0,1", "1,0")
    for name, (start, end, devices) in notes.items():
        assert devices in ("0", "1", "0,1", "1,0"), (name, devices)
    # jobs that ran at the same time never shared a GPU
    items = sorted(notes.items(), key=lambda kv: kv[1][0])
    for i, (a, (s1, e1, d1)) in enumerate(items):
        for b, (s2, e2, d2) in items[i + 1:]:
            if s2 < e1 - 1:  # overlapping (1 s of slack for the second-resolution stamps)
                assert not set(d1.split(",")) & set(d2.split(",")), (a, d1, b, d2)


def test_multi_gpu_training_ran_torchrun_with_one_process_per_gpu(slurm_run):
    log = (slurm_run["work"] / "results" / "test" / "logs" / "train_bas.log").read_text()
    assert "(x2 ranks)" in log  # bas_seed.train logs the DDP world size: torchrun started 2 processes


# ---- kill a job mid-training: the rerun resumes from the checkpoint ------------------------------------------------

def squeue_job_of(rule: str) -> str | None:
    p = run(["squeue", "-h", "-o", "%i %k %T"])
    for line in p.stdout.splitlines():
        job, comment, state = (line.split() + ["", "", ""])[:3]
        if comment.startswith(f"rule_{rule}") and state == "RUNNING":
            return job
    return None


def test_scancel_mid_training_then_the_rerun_resumes_and_finishes_with_the_same_outputs(cluster, tmp_path):
    override = {"device": "cpu", "bas": {"epochs": 30, "max_images": None}}  # ~20 s of training: time to scancel
    work = make_workdir(tmp_path / "killed", override)
    target = ("results/test/bas_seed/model.pt", "--configfile", "configs/test.yaml", "override.yaml", *TEST_CLUSTER,
              *SIZES)
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", *target, "--snakefile",
                             str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), "--workflow-profile",
                             str(ROOT / "workflow" / "profiles" / "slurm"), "--retries", "0"],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    partial = work / "results" / "test" / "bas_seed" / "model.pt.partial"
    deadline = time.time() + 600
    while not partial.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    job = squeue_job_of("train_bas")
    assert partial.is_file() and job, "train_bas never wrote its first checkpoint as a running SLURM job"
    run(["scancel", job])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out[-3000:]
    assert not (work / "results" / "test" / "bas_seed" / "model.pt").exists()  # never a half-written output
    # the plain rerun (the profile reruns incomplete jobs) resumes after the last finished epoch
    smk(work, *target)
    log = (work / "results" / "test" / "logs" / "train_bas.log").read_text()
    assert re.search(r"resuming from .*model\.pt\.partial after epoch \d+", log), log[-2000:]
    history = [json.loads(line) for line in
               (work / "results" / "test" / "bas_seed" / "loss_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in history] == list(range(1, 31))  # the whole history, kept through the resume

    # the same outputs as an uninterrupted run (run locally: the scheduler plays no part in what is computed)
    import torch

    from wsss_common.training import load_checkpoint

    clean = make_workdir(tmp_path / "clean", override)
    # the same torch thread count as the SLURM jobs: another summation order would drift over 30 epochs
    local = run([sys.executable, "-m", "snakemake", "results/test/bas_seed/model.pt", "--cores", "2", "--configfile",
                 "configs/test.yaml", "override.yaml", "--set-threads", "train_bas=1", "pretrain_cam=1", "--snakefile",
                 str(ROOT / "workflow" / "Snakefile"), "--directory", str(clean)], cwd=clean)
    assert local.returncode == 0, local.stderr[-3000:]
    a = load_checkpoint(work / "results" / "test" / "bas_seed" / "model.pt")["model"]
    b = load_checkpoint(clean / "results" / "test" / "bas_seed" / "model.pt")["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert planned_rules(smk(work, *target, "-n").stdout) == set()  # and the resumed run is complete
