"""`python -m kit run` on tiny notebooks that the tests write: one passes, the others raise, die or hang."""
import json
import subprocess
import sys

import nbformat
import pytest


def notebook(path, body: str):
    params = nbformat.v4.new_code_cell("quick = False\ndevice = 'auto'\nlr = 0.1\nmetrics_path = None")
    params.metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)]), path)


# Writes metrics shaped like kit.record.metrics, so the table and the figure have something to show.
GOOD = """import json, pathlib
history = [{"epoch": e, "test_acc": 97.0 + e, "train_acc": 96.0 + e} for e in (1, 2, 3)]
record = {"parameters": 7416, "epochs": 3, "best_train_acc": 99.0, "best_train_epoch": 3,
          "best_test_acc": 100.0 if lr > 1 else 99.25, "best_test_epoch": 3, "last_test_acc": [98.0, 99.0, 99.25],
          "device": "cpu", "data": "toy", "quick": quick, "lr": lr, "history": history}
if metrics_path:
    pathlib.Path(metrics_path).write_text(json.dumps(record))
print('fine')"""


@pytest.fixture
def folder(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    notebook(nbs / "a_good.ipynb", GOOD)
    notebook(nbs / "b_bad.ipynb", "x = 1\nraise ValueError('the model is too big')")
    return nbs


def kit_run(*args):
    return subprocess.run([sys.executable, "-m", "kit", "run", *args], capture_output=True, text=True, timeout=300)


def test_run_reports_failures_keeps_going_and_writes_the_table(folder, tmp_path):
    out = tmp_path / "reports"
    done = kit_run(str(folder), "--quick", "--out", str(out), "-p", "lr", "0.5")
    assert done.returncode == 1
    assert "ok  a_good.ipynb" in done.stdout and "FAILED  b_bad.ipynb" in done.stdout
    assert "cell 1 (`x = 1`): ValueError: the model is too big" in done.stderr
    assert "raise ValueError('the model is too big')" in done.stderr  # the end of the traceback
    assert "1 of 2 notebook(s) failed: b_bad.ipynb" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "a_good.ipynb", "a_good.metrics.json", "a_good.run.json", "a_good_files",
        "b_bad.failed.json", "results.json", "steps.png"]
    metrics = json.loads((out / "a_good.metrics.json").read_text())
    assert metrics["quick"] is True and metrics["lr"] == 0.5  # -p and --quick reached the notebook
    rows = {r["notebook"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["a_good.ipynb"]["status"] == "ok" and rows["a_good.ipynb"]["parameters"] == 7416
    assert rows["a_good.ipynb"]["last_test_acc"] == [98.0, 99.0, 99.25]
    assert rows["b_bad.ipynb"]["status"] == "failed" and "ValueError" in rows["b_bad.ipynb"]["error"]
    table = (out / "README.md").read_text()
    assert "| [a_good.ipynb](a_good.ipynb) *quick: toy* | 7,416 | 99.00% | 99.25% (3) | 98.00, 99.00, 99.25 | 3 | cpu |" in table
    assert "![test accuracy per epoch" in table and "b_bad.ipynb" in table


def test_a_failed_rerun_keeps_the_last_good_report(folder, tmp_path):
    out = tmp_path / "reports"
    assert kit_run(str(folder / "a_good.ipynb"), "--out", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.glob("a_good*") if p.is_file()}
    notebook(folder / "a_good.ipynb", "raise RuntimeError('broken now')")
    done = kit_run(str(folder / "a_good.ipynb"), "--out", str(out))
    assert done.returncode == 1 and "RuntimeError: broken now" in done.stderr
    after = {p.name: p.read_bytes() for p in out.glob("a_good*") if p.is_file()}
    assert after.pop("a_good.failed.json") and after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert "failed (the last good report is kept)" in (out / "README.md").read_text()


def test_changed_only_skips_what_did_not_change(folder, tmp_path):
    out = tmp_path / "reports"
    nb = str(folder / "a_good.ipynb")
    assert kit_run(nb, "--out", str(out)).returncode == 0
    again = kit_run(nb, "--out", str(out), "--changed-only")
    assert again.returncode == 0 and "skip  a_good.ipynb" in again.stdout
    changed = kit_run(nb, "--out", str(out), "--changed-only", "-p", "lr", "0.2")
    assert "ok  a_good.ipynb" in changed.stdout


def test_parallel_jobs(folder, tmp_path):
    notebook(folder / "b_bad.ipynb", GOOD)
    done = kit_run(str(folder), "--jobs", "2", "--out", str(tmp_path / "r"))
    assert done.returncode == 0 and done.stdout.count("    ok  ") == 2


def test_a_hanging_notebook_is_stopped_and_reported(tmp_path):
    notebook(tmp_path / "hang.ipynb", "import time\ntime.sleep(600)")
    done = kit_run(str(tmp_path / "hang.ipynb"), "--timeout", "8", "--out", str(tmp_path / "r"))
    assert done.returncode == 1 and "timed out after 8s" in done.stderr
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]


def test_a_dying_kernel_is_reported(tmp_path):
    notebook(tmp_path / "die.ipynb", "import os\nos._exit(1)")
    done = kit_run(str(tmp_path / "die.ipynb"), "--out", str(tmp_path / "r"))
    assert done.returncode == 1 and "FAILED  die.ipynb" in done.stdout and "Dead" in done.stderr


def test_run_names_a_missing_notebook(tmp_path):
    done = kit_run(str(tmp_path / "nope.ipynb"))
    assert done.returncode == 1 and "nope.ipynb: not a notebook" in done.stderr


def test_sub_folders_report_into_the_same_sub_folders_and_templates_are_left_out(tmp_path):
    nbs = tmp_path / "nbs"
    for sub in ("", "assignments/solution", "assignments/template"):
        (nbs / sub).mkdir(parents=True, exist_ok=True)
        notebook(nbs / sub / "step.ipynb" if sub else nbs / "intro.ipynb", GOOD)
    out = tmp_path / "reports"
    done = kit_run(str(nbs), "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "intro.ipynb").exists() and (out / "assignments" / "solution" / "step.ipynb").exists()
    assert not (out / "assignments" / "template").exists()
    for folder in (out, out / "assignments" / "solution"):  # one results table per folder
        assert len(json.loads((folder / "results.json").read_text())) == 1
    assert "[assignments/solution/](assignments/solution/README.md)" in (out / "README.md").read_text()


def test_text_only_refreshes_the_markdown_of_a_report(tmp_path):
    nbs, out = tmp_path / "nbs", tmp_path / "reports"
    nbs.mkdir()
    notebook(nbs / "a.ipynb", GOOD)
    nb = nbformat.read(nbs / "a.ipynb", 4)
    nb.cells.append(nbformat.v4.new_markdown_cell("## Analysis\nTo be written."))
    nbformat.write(nb, nbs / "a.ipynb")
    assert kit_run(str(nbs), "--quick", "--out", str(out)).returncode == 0
    nb.cells[-1].source = "## Analysis\nWritten from the run's curves."
    nbformat.write(nb, nbs / "a.ipynb")
    done = kit_run(str(nbs), "--text-only", "--out", str(out))
    assert done.returncode == 0 and "refreshed the text of" in done.stdout
    report = nbformat.read(out / "a.ipynb", 4)
    assert report.cells[-1].source.endswith("from the run's curves.") and report.cells[2].outputs  # outputs kept
    nb.cells.append(nbformat.v4.new_code_cell("print('new')"))
    nbformat.write(nb, nbs / "a.ipynb")
    refused = kit_run(str(nbs), "--text-only", "--out", str(out))
    assert refused.returncode == 1 and "run it again" in refused.stderr


def test_the_table_has_a_row_for_each_run_of_a_multi_run_notebook(tmp_path):
    from kit.report import write_report

    def run(name, seed, best):
        return {"name": name, "seed": seed, "parameters": 7552, "epochs": 2, "best_train_acc": 99.0,
                "best_test_acc": best, "best_test_epoch": 2, "last_test_acc": [99.0, best], "seconds": 10.0 + seed,
                "history": [{"epoch": 1, "test_acc": 99.0}, {"epoch": 2, "test_acc": best}]}

    runs = [run("seed 1", 1, 99.45), run("seed 2", 2, 99.5)]
    (tmp_path / "step4.metrics.json").write_text(json.dumps({**runs[0], "runs": runs, "device": "cpu"}))
    (tmp_path / "step4.run.json").write_text(json.dumps({"status": "ok", "seconds": 99.0, "device": "cpu"}))
    rows = write_report(tmp_path)
    assert [(r["run"], r["best_test_acc"], r["seconds"]) for r in rows] == [("seed 1", 99.45, 11.0), ("seed 2", 99.5, 12.0)]
    table = (tmp_path / "README.md").read_text()
    assert "| [step4.ipynb](step4.ipynb) · seed 2 | 7,552 | 99.00% | 99.50% (2) | 99.00, 99.50 | 2 | cpu | 12 s | ok |" in table
