"""The code is linted with ruff (settings in pyproject.toml), as the pre-commit hook and CI do."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                                       capture_output=True).returncode != 0:
        pytest.skip("ruff is not installed (it comes with the test extras: pip install -e .[test])")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "kit", "tests", "benchmarks", "notebooks"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pre_commit_hooks_strip_notebooks_and_lint():
    text = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "id: nbstripout" in text and "id: ruff" in text and "files: ^notebooks/" in text


def test_the_hook_runs_the_ruff_that_ci_runs():
    hook = re.search(r"ruff-pre-commit\n\s+rev: v([\d.]+)", (ROOT / ".pre-commit-config.yaml").read_text())
    pinned = re.search(r'"ruff==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert hook and pinned and hook.group(1) == pinned.group(1)
