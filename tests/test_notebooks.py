"""Every notebook in notebooks/ runs end to end in quick mode through `python -m kit run`."""
import json
import os
import subprocess
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_every_notebook_runs_in_quick_mode(mnist_root, tmp_path):
    done = subprocess.run([sys.executable, "-m", "kit", "run", str(NOTEBOOKS), "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200,
                          env={k: v for k, v in os.environ.items() if k != "KIT_QUICK"})  # --quick, as a user runs it
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["notebook"] for r in rows} == {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert all(r["status"] == "ok" and r["quick"] and r["parameters"] for r in rows)


def test_source_notebooks_carry_no_outputs():
    for path in NOTEBOOKS.rglob("*.ipynb"):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name} has outputs"
