"""`python -m kit run` on two tiny notebooks that the test writes: one passes, one raises."""
import json
import subprocess
import sys

import nbformat
import pytest


def notebook(path, body: str):
    params = nbformat.v4.new_code_cell("quick = False\ndevice = 'auto'\nlr = 0.1\nmetrics_path = None")
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(body)
    nbformat.write(nbformat.v4.new_notebook(cells=[params, work]), path)


GOOD = ("import json, pathlib\n"
        "if metrics_path: pathlib.Path(metrics_path).write_text(json.dumps({'quick': quick, 'lr': lr}))\n"
        "print('fine')")


@pytest.fixture
def folder(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    notebook(nbs / "a_good.ipynb", GOOD)
    notebook(nbs / "b_bad.ipynb", "x = 1\nraise ValueError('the model is too big')")
    return nbs


def kit_run(*args):
    return subprocess.run([sys.executable, "-m", "kit", "run", *args], capture_output=True, text=True, timeout=300)


def test_run_reports_failures_and_keeps_going(folder, tmp_path):
    out = tmp_path / "reports"
    done = kit_run(str(folder), "--quick", "--out", str(out), "-p", "lr", "0.5")
    assert done.returncode == 1
    assert "ok  a_good.ipynb" in done.stdout and "FAILED  b_bad.ipynb" in done.stdout
    assert "cell 1 (`x = 1`): ValueError: the model is too big" in done.stderr
    assert "1 of 2 notebook(s) failed: b_bad.ipynb" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_good.ipynb", "a_good.metrics.json"]
    assert json.loads((out / "a_good.metrics.json").read_text()) == {"quick": True, "lr": 0.5}


def test_a_failed_rerun_keeps_the_last_good_report(folder, tmp_path):
    out = tmp_path / "reports"
    assert kit_run(str(folder / "a_good.ipynb"), "--out", str(out)).returncode == 0
    before = (out / "a_good.ipynb").read_text()
    notebook(folder / "a_good.ipynb", "raise RuntimeError('broken now')")
    done = kit_run(str(folder / "a_good.ipynb"), "--out", str(out))
    assert done.returncode == 1 and "RuntimeError: broken now" in done.stderr
    assert (out / "a_good.ipynb").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_run_names_a_missing_notebook(tmp_path):
    done = kit_run(str(tmp_path / "nope.ipynb"))
    assert done.returncode == 1 and "nope.ipynb: not a notebook" in done.stderr
