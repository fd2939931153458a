"""The rules are snakefmt-formatted, and `snakemake --lint` finds nothing beyond the findings answered in
workflow/Snakefile's header."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSWERED = {
    "Specify a conda environment or container for each rule.",
    "Shell command directly uses variable PY from outside of the rule",
    "Mixed rules and functions in same snakefile.",
}


def test_rules_are_snakefmt_formatted():
    p = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "workflow/"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, f"run `snakefmt workflow/`:\n{p.stdout}{p.stderr}"


def test_lint_finds_only_the_answered_findings(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    p = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile", "configs/test.yaml",
                        "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True)
    found = set(re.findall(r"^\s*\* (.+?):?$", p.stdout + p.stderr, re.M))
    assert found, "no lint output parsed: did the format change?\n" + (p.stdout + p.stderr)[-2000:]
    assert found <= ANSWERED, f"new lint findings: {sorted(found - ANSWERED)}"
    header = (ROOT / "workflow" / "Snakefile").read_text()
    for title in ANSWERED:
        assert title.rstrip(".").split(" for each")[0].split(" from")[0] in header, title
