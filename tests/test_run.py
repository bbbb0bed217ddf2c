"""`python -m kit run` on tiny notebooks that the tests write: one passes, the others raise, die or hang."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from kit.run import _alive, _descendants, recorded_timings, start_order


def notebook(path, body: str, params="quick = False\ndevice = 'auto'\nlr = 0.1"):
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body)]), path)


# A record of three epochs, written where `kit run` says (KIT_METRICS), with the epoch lines a Trainer prints.
GOOD = """import os
from kit.history import EpochRecord, History, epoch_line
from kit.record import Environment, Record, Run
h = History([EpochRecord(e, 0.5 / e, 96.0 + e, 0.4 / e, 97.0 + e if lr < 1 else 100.0, lr, 1.0) for e in (1, 2, 3)])
for e in h.epochs:
    print(epoch_line(e))
rec = Record([Run("", 7416, 7416, h, data="toy", test_images=100, train_images=100)], quick=quick,
             environment=Environment.here("cpu"))
if os.environ.get("KIT_METRICS"):
    rec.save(os.environ["KIT_METRICS"])
print('fine')"""


@pytest.fixture
def folder(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    notebook(nbs / "a_good.ipynb", GOOD)
    notebook(nbs / "b_bad.ipynb", "x = 1\nraise ValueError('the model is too big')")
    return nbs


def kit_run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "kit", "run", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def test_run_reports_failures_keeps_going_and_writes_the_table(folder, tmp_path):
    out = tmp_path / "reports"
    done = kit_run(folder, "--quick", "--out", out, "-p", "lr", "0.5")
    assert done.returncode == 1
    assert "ok  a_good.ipynb" in done.stdout and "FAILED  b_bad.ipynb" in done.stdout
    assert "cell 1 (`x = 1`): ValueError: the model is too big" in done.stderr
    assert "raise ValueError('the model is too big')" in done.stderr  # the end of the traceback
    assert "1 of 2 notebook(s) failed: b_bad.ipynb" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "a_good.ipynb", "a_good.metrics.json", "a_good.run.json", "a_good_files",
        "b_bad.failed.json", "results.json", "steps.png"]
    record = json.loads((out / "a_good.metrics.json").read_text())
    assert record["quick"] is True and record["runs"][0]["history"][0]["lr"] == 0.5  # -p and --quick arrived
    rows = {r["notebook"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["a_good.ipynb"]["status"] == "ok" and rows["a_good.ipynb"]["parameters"] == 7416
    assert rows["b_bad.ipynb"]["status"] == "failed" and "ValueError" in rows["b_bad.ipynb"]["error"]
    assert rows["b_bad.ipynb"]["quick"] is True  # a failed smoke run is still a smoke run
    table = (out / "README.md").read_text()
    assert "| [a_good.ipynb](a_good.ipynb) *quick: toy* | 7,416 |" in table and "b_bad.ipynb" in table


def test_the_plan_comes_first_and_epoch_lines_stream(folder, tmp_path):
    out = tmp_path / "reports"
    done = kit_run(folder / "a_good.ipynb", "--out", out)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("kit run: 1 notebook on cpu") and "no earlier run" in lines[1]
    assert "timeout: none" in lines[1]  # a full run with no earlier one on this kind of device is never cut short
    assert "  [a_good] epoch  1  train loss 0.5000" in done.stdout
    again = kit_run(folder / "a_good.ipynb", "--out", out)
    assert "last run here:" in again.stdout.splitlines()[1] and "timeout: 6" in again.stdout.splitlines()[1]


def test_a_batch_starts_the_longest_notebooks_first():
    # ranked by the kind with records for most notebooks; one with none (it may be long) first; ties as listed
    timings = [{"cpu": 190}, {"cpu": 4800, "NVIDIA H200": 70}, {"NVIDIA H200": 79}, {"cpu": 2200}, {"cpu": 190}]
    assert start_order(timings, "NVIDIA H100 80GB HBM3") == ([2, 1, 3, 0, 4], "cpu")
    assert start_order(timings, "NVIDIA H200")[1] == "cpu"  # 4 notebooks have CPU times, 2 this GPU's
    assert start_order([{"cpu": 5, "x": 9}, {"cpu": 7, "x": 1}], "x") == ([0, 1], "x")  # a tie: this kind
    assert start_order([{}, {}, {}], "cpu") == ([0, 1, 2], None)  # no records: as listed


def test_the_plan_lists_the_notebooks_in_the_order_they_start(tmp_path):
    nbs, out = tmp_path / "nbs", tmp_path / "reports"
    nbs.mkdir(), out.mkdir()
    for name, seconds in (("a_short", 5.0), ("b_long", 500.0)):
        notebook(nbs / f"{name}.ipynb", GOOD)
        (out / f"{name}.run.json").write_text(json.dumps({"timings": {"cpu": seconds}}))
    lines = kit_run(nbs, "--out", out, "--device", "cpu", "--jobs", "1").stdout.splitlines()
    assert "the longest first (by the last runs on cpu)" in lines[0]
    assert "b_long.ipynb" in lines[1] and "8 min" in lines[1] and "a_short.ipynb" in lines[2]
    finished = [x.split()[1] for x in lines if x.strip().startswith("ok  ")]
    assert finished == ["b_long.ipynb", "a_short.ipynb"]  # one job: it ran them in that order


def test_a_batch_into_a_fresh_folder_knows_the_last_times_from_the_usual_reports(tmp_path):
    usual, fresh = tmp_path / "reports", tmp_path / "fresh"
    usual.mkdir()
    (usual / "a.run.json").write_text(json.dumps({"timings": {"cpu": 300.0, "NVIDIA H200": 70.0}}))
    assert recorded_timings(fresh, usual, "a") == {"cpu": 300.0, "NVIDIA H200": 70.0}
    fresh.mkdir()
    (fresh / "a.run.json").write_text(json.dumps({"timings": {"cpu": 250.0}}))
    assert recorded_timings(fresh, usual, "a") == {"cpu": 250.0, "NVIDIA H200": 70.0}  # its own record first
    assert recorded_timings(fresh, None, "b") == {}
    # a run into a fresh folder keeps the usual report's times of other kinds of device in its record
    notebook(tmp_path / "a_good.ipynb", GOOD)
    (usual / "a_good.run.json").write_text(json.dumps({"timings": {"NVIDIA H200": 70.0}}))
    done = kit_run("a_good.ipynb", "--out", "elsewhere", "--device", "cpu", cwd=tmp_path)
    assert "last run here: no earlier run" in done.stdout  # none on this kind
    kept = json.loads((tmp_path / "elsewhere" / "a_good.run.json").read_text())["timings"]
    assert kept["NVIDIA H200"] == 70.0 and kept["cpu"] > 0


def test_no_machine_path_lands_in_a_report(folder, tmp_path):
    out = tmp_path / "reports"
    assert kit_run(folder / "a_good.ipynb", "--out", out).returncode == 0
    text = (out / "a_good.ipynb").read_text()
    assert str(tmp_path) not in text and "metrics_path" not in text
    meta = json.loads(text)["metadata"]
    assert meta["kit"]["run_id"] and meta["kit"]["parameters"] == {"quick": False, "device": "auto"}
    assert meta["papermill"]["input_path"] == "a_good.ipynb"  # both lie outside the folder it was started in


def test_a_report_names_its_notebook_relative_to_it_only_inside_the_project(tmp_path, monkeypatch):
    from kit.worker import input_path

    project = tmp_path / "course"
    notebook = project / "notebooks" / "sub" / "step.ipynb"
    project.mkdir()
    monkeypatch.chdir(project)
    assert input_path(notebook, project / "reports" / "sub") == "../../notebooks/sub/step.ipynb"
    assert input_path(notebook, tmp_path / "elsewhere") == "step.ipynb"  # a batch into a folder outside
    notebook.parent.mkdir(parents=True)
    monkeypatch.chdir(notebook.parent)  # started among the notebooks, reporting beside them
    assert input_path(notebook, project / "reports") == "step.ipynb"


def test_a_failed_rerun_keeps_the_last_good_report(folder, tmp_path):
    out = tmp_path / "reports"
    assert kit_run(folder / "a_good.ipynb", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.glob("a_good*") if p.is_file()}
    notebook(folder / "a_good.ipynb", "raise RuntimeError('broken now')")
    done = kit_run(folder / "a_good.ipynb", "--out", out)
    assert done.returncode == 1 and "RuntimeError: broken now" in done.stderr
    after = {p.name: p.read_bytes() for p in out.glob("a_good*") if p.is_file()}
    assert after.pop("a_good.failed.json") and after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert "failed (the last good report is kept)" in (out / "README.md").read_text()


def test_changed_only_skips_what_did_not_change(folder, tmp_path):
    out = tmp_path / "reports"
    nb = folder / "a_good.ipynb"
    assert kit_run(nb, "--out", out).returncode == 0
    again = kit_run(nb, "--out", out, "--changed-only")
    assert again.returncode == 0 and "skip  a_good.ipynb" in again.stdout
    changed = kit_run(nb, "--out", out, "--changed-only", "-p", "lr", "0.2")
    assert "ok  a_good.ipynb" in changed.stdout


def test_changed_only_sees_a_change_to_the_models(monkeypatch, tmp_path):
    import kit.run

    nb = tmp_path / "x.ipynb"
    notebook(nb, "print(1)")
    before = kit.run.inputs_hash(nb, {})
    models = kit.run.PACKAGE / "models" / "steps.py"
    monkeypatch.setattr(kit.run.Path, "read_bytes",
                        lambda self, _o=kit.run.Path.read_bytes: _o(self) + (b"#" if self == models else b""))
    assert kit.run.inputs_hash(nb, {}) != before


def test_an_unknown_parameter_is_refused_before_anything_runs(folder, tmp_path):
    done = kit_run(folder / "a_good.ipynb", "--out", tmp_path / "r", "-p", "epochz", "3")
    assert done.returncode == 1 and "no parameter 'epochz'" in done.stderr
    assert "it declares: quick, device, lr" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r" / "a_good.ipynb").exists()


@pytest.mark.parametrize("args, message", [
    (["--timeout", "-5"], "timeout must be a whole number of at least 1"),
    (["--jobs", "0"], "jobs must be a whole number of at least 1"),
])
def test_nonsense_options_are_refused(folder, tmp_path, args, message):
    done = kit_run(folder / "a_good.ipynb", "--out", tmp_path / "r", *args)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_a_smoke_run_reports_apart_and_leaves_the_full_runs_times_alone(tmp_path):
    (tmp_path / "notebooks").mkdir()
    notebook(tmp_path / "notebooks" / "a_good.ipynb", GOOD)
    (tmp_path / "reports").mkdir()
    full = {"timings": {"cpu": 300.0}}
    (tmp_path / "reports" / "a_good.run.json").write_text(json.dumps(full))  # a full run's report, say
    done = kit_run("notebooks/a_good.ipynb", "--quick", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["a_good.run.json"]  # untouched
    smoke = json.loads((tmp_path / "reports-smoke" / "a_good.run.json").read_text())
    assert smoke["timings"] == full["timings"]  # a smoke run's seconds would make the next full run's timeout


def test_out_naming_the_notebooks_own_folder_is_refused(folder):
    before = (folder / "a_good.ipynb").read_bytes()
    done = kit_run(folder / "a_good.ipynb", "--out", folder)
    assert done.returncode == 1 and "would replace the notebook" in done.stderr and "Traceback" not in done.stderr
    assert (folder / "a_good.ipynb").read_bytes() == before


def test_a_parameter_for_a_notebook_without_a_parameters_cell_is_refused(tmp_path):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), tmp_path / "plain.ipynb")
    done = kit_run(tmp_path / "plain.ipynb", "--out", tmp_path / "r", "-p", "epochs", "1")
    assert done.returncode == 1 and "no cell tagged `parameters`" in done.stderr
    assert not (tmp_path / "r" / "plain.ipynb").exists()


@pytest.mark.parametrize("text", ["{bad", "[]", "{}"])
def test_a_file_that_is_not_a_notebook_is_named(tmp_path, text):
    (tmp_path / "broken.ipynb").write_text(text)
    done = kit_run(tmp_path / "broken.ipynb", "--out", tmp_path / "r")
    assert done.returncode == 1 and "broken.ipynb: not a readable notebook" in done.stderr
    assert "Traceback" not in done.stderr


def test_out_naming_a_file_is_refused(folder, tmp_path):
    (tmp_path / "file").write_text("x")
    done = kit_run(folder / "a_good.ipynb", "--out", tmp_path / "file")
    assert done.returncode == 1 and "is a file" in done.stderr and "Traceback" not in done.stderr


def test_parallel_jobs(folder, tmp_path):
    notebook(folder / "b_bad.ipynb", GOOD)
    done = kit_run(folder, "--jobs", "2", "--out", tmp_path / "r")
    assert done.returncode == 0 and done.stdout.count("    ok  ") == 2


def test_a_hanging_notebook_is_stopped_and_reported(tmp_path):
    notebook(tmp_path / "hang.ipynb", "import time\ntime.sleep(600)")
    done = kit_run(tmp_path / "hang.ipynb", "--timeout", "8", "--out", tmp_path / "r")
    assert done.returncode == 1 and "timed out after 8s" in done.stderr
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]


def test_a_dying_kernel_names_its_cell(tmp_path):
    notebook(tmp_path / "die.ipynb", "import os\nos._exit(1)")
    done = kit_run(tmp_path / "die.ipynb", "--out", tmp_path / "r")
    assert done.returncode == 1 and "FAILED  die.ipynb" in done.stdout
    assert "cell 1 (`import os`)" in done.stderr and "out of memory" not in done.stderr


def test_a_second_batch_into_the_same_folder_stops_and_says_who_holds_it(folder, tmp_path):
    notebook(folder / "slow.ipynb", "import time\ntime.sleep(30)")
    first = subprocess.Popen([sys.executable, "-m", "kit", "run", str(folder / "slow.ipynb"), "--out", str(tmp_path / "r")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if (tmp_path / "r" / ".kit-run.lock").exists():
                break
            time.sleep(0.1)
        second = kit_run(folder / "a_good.ipynb", "--out", tmp_path / "r")
        assert second.returncode == 1 and f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
        inside = kit_run(folder / "a_good.ipynb", "--out", tmp_path / "r" / "sub")  # a folder the first writes into
        assert inside.returncode == 1 and f"process {first.pid}" in inside.stderr
        assert not (tmp_path / "r" / "sub" / "a_good.ipynb").exists()
    finally:
        first.kill()
        first.wait()


def test_ctrl_c_stops_the_workers_keeps_the_reports_whole_and_says_what_finished(folder, tmp_path):
    out = tmp_path / "r"
    assert kit_run(folder / "a_good.ipynb", "--out", out).returncode == 0
    before = (out / "a_good.ipynb").read_bytes()
    notebook(folder / "a_good.ipynb", "import time\ntime.sleep(60)")
    # as from a terminal: a shell that starts a background job makes it ignore SIGINT, and Python keeps that
    batch = subprocess.Popen([sys.executable, "-m", "kit", "run", str(folder / "a_good.ipynb"), "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):  # until the worker's kernel is running the cell
        family = _descendants(batch.pid)  # the worker, and the kernel in a session of its own
        if any(b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _alive(family)):
            break
        time.sleep(0.1)
    time.sleep(2)
    family = _alive(_descendants(batch.pid))
    assert len(family) >= 2, "the worker had not started its kernel"
    batch.send_signal(signal.SIGINT)
    stdout, stderr = batch.communicate(timeout=60)
    assert batch.returncode == 130 and "Traceback" not in stderr
    assert "interrupted (Ctrl-C)" in stderr and "stopped: a_good.ipynb" in stderr and "--changed-only" in stderr
    assert (out / "a_good.ipynb").read_bytes() == before  # the report in place is the whole old one
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert not _alive(family), "a worker or kernel outlived the batch"


def test_a_commit_killed_half_way_is_finished_by_the_next_run(tmp_path):
    from kit.files import commit_report, recover, staging

    out = tmp_path / "r"
    out.mkdir()
    (out / "x.ipynb").write_text("old notebook")
    (out / "x.metrics.json").write_text("old record")
    (out / "x.failed.json").write_text("an old failure")
    stage = staging(out, "x")
    stage.mkdir()
    (stage / "x.ipynb").write_text("new notebook")
    (stage / "x.metrics.json").write_text("new record")
    (out / ".x.commit").write_text(json.dumps(["x.ipynb", "x.metrics.json"]))  # as if killed right after the journal
    (out / "x.ipynb").unlink()  # ... and after the first file had gone
    assert recover(out)
    assert (out / "x.ipynb").read_text() == "new notebook" and (out / "x.metrics.json").read_text() == "new record"
    assert not (out / "x.failed.json").exists() and sorted(p.name for p in out.iterdir()) == ["x.ipynb", "x.metrics.json"]
    (stage := staging(out, "x")).mkdir()
    (stage / "x.ipynb").write_text("half staged")  # killed before its journal: discarded, the report stays
    recover(out)
    assert (out / "x.ipynb").read_text() == "new notebook" and not stage.exists()
    (stage := staging(out, "x")).mkdir()
    (stage / "x.ipynb").write_text("newer notebook")
    commit_report(out, "x")  # the whole swap, as a run that is not killed does it
    assert (out / "x.ipynb").read_text() == "newer notebook" and not (out / "x.metrics.json").exists()


def test_run_names_a_missing_notebook(tmp_path):
    done = kit_run(tmp_path / "nope.ipynb")
    assert done.returncode == 1 and "nope.ipynb: not a notebook" in done.stderr


def test_sub_folders_report_into_the_same_sub_folders_and_templates_are_left_out(tmp_path):
    nbs = tmp_path / "nbs"
    for sub in ("", "assignments/solution", "assignments/template"):
        (nbs / sub).mkdir(parents=True, exist_ok=True)
        notebook(nbs / sub / "step.ipynb" if sub else nbs / "intro.ipynb", GOOD)
    out = tmp_path / "reports"
    done = kit_run(nbs, "--quick", "--out", out)
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
    assert kit_run(nbs, "--quick", "--out", out).returncode == 0
    nb.cells[-1].source = "## Analysis\nWritten from the run's curves."
    nbformat.write(nb, nbs / "a.ipynb")
    done = kit_run(nbs, "--text-only", "--out", out)
    assert done.returncode == 0 and "refreshed the text of" in done.stdout
    report = nbformat.read(out / "a.ipynb", 4)
    assert report.cells[-1].source.endswith("from the run's curves.") and report.cells[2].outputs  # outputs kept
    nb.cells.append(nbformat.v4.new_code_cell("print('new')"))
    nbformat.write(nb, nbs / "a.ipynb")
    refused = kit_run(nbs, "--text-only", "--out", out)
    assert refused.returncode == 1 and "run it again" in refused.stderr


def test_text_only_puts_the_block_the_run_printed_into_the_result(tmp_path):
    from kit.record import Record, markdown

    nbs, out = tmp_path / "nbs", tmp_path / "reports"
    nbs.mkdir()
    notebook(nbs / "a.ipynb", GOOD.replace("97.0 + e if lr < 1 else 100.0",
                                           "90.0 + 2 * e * lr + float(os.environ.get('TOY_SHIFT', 0))"))
    nb = nbformat.read(nbs / "a.ipynb", 4)
    nb.cells += [nbformat.v4.new_markdown_cell("## Result\nTo be written."),
                 nbformat.v4.new_markdown_cell("## Analysis\nTo be written.")]
    nbformat.write(nb, nbs / "a.ipynb")
    full = {k: v for k, v in os.environ.items() if k != "KIT_QUICK"}
    assert kit_run(nbs, "--out", out, "-p", "lr", "0.1", env=full).returncode == 0
    first = markdown(Record.load(out / "a.metrics.json"))
    assert "90.60%" in first
    said = kit_run(nbs, "--text-only", "--out", out, env=full)
    assert said.returncode == 0 and "it holds no block as `setup.result` printed it" in said.stdout
    nb.cells[-2].source = f"## Result\nReference run: three epochs.\n\n{first}\n\nThe author's last words."
    nbformat.write(nb, nbs / "a.ipynb")
    said = kit_run(nbs, "--text-only", "--out", out, env=full)
    assert "the Result already shows the run's numbers" in said.stdout

    assert kit_run(nbs, "--out", out, "-p", "lr", "0.5", env=full).returncode == 0  # other parameters than its own
    said = kit_run(nbs, "--text-only", "--out", out, env=full)
    assert "the run was made with other parameters than the notebook's" in said.stdout

    assert kit_run(nbs, "--out", out, env={**full, "TOY_SHIFT": "1"}).returncode == 0  # a rerun elsewhere, say
    said = kit_run(nbs, "--text-only", "--out", out, env=full)
    assert said.returncode == 0 and "the Result now shows the numbers of the run" in said.stdout
    second = markdown(Record.load(out / "a.metrics.json"))
    assert "91.60%" in second and second != first
    result = nbformat.read(nbs / "a.ipynb", 4).cells[-2].source
    assert result == f"## Result\nReference run: three epochs.\n\n{second}\n\nThe author's last words."
    assert nbformat.read(out / "a.ipynb", 4).cells[-2].source == result  # and in the report

    assert kit_run(nbs, "--quick", "--out", out).returncode == 0  # a smoke run's numbers are no Result
    said = kit_run(nbs, "--text-only", "--out", out)
    assert "the report is a smoke run" in said.stdout and nbformat.read(nbs / "a.ipynb", 4).cells[-2].source == result


BLOCK = "- Parameters: 10\n- Best test accuracy: 99.50% (epoch 3)\n- Budget: met\n- 3 epochs in 4 s on NVIDIA H100"
EARLIER = ("- Parameters: 12\n- Best test accuracy: 98.50% (epoch 2)\n- Budget: missed (the last 3 test accuracies "
           "are 98.1, 98.2, 98.5; each must reach 99.4%)\n- 3 epochs in 9 s on AMD EPYC 7B13")


@pytest.mark.parametrize("cell, found", [
    (f"## Result\nReference run.\n\n{EARLIER}\n\nThe author's words.", [3]),  # the prose around it stays
    (f"## Result\n<!-- the CPU run, kept:\n{EARLIER}\n-->\nTo be written.", []),  # hidden in a comment
    (f"## Result\n{EARLIER.replace('(epoch 2)', '(epoch 2), the best so far')}", []),  # words added to a line
    (f"## Result\n{EARLIER.replace('7B13', '7B13; a quick run. Then more')}", []),  # words after the device
    (f"## Result\n{EARLIER}\n\n{EARLIER}", [1, 6]),  # two blocks: which is this run's?
    (f"## Result\n{EARLIER.replace('- Budget', '* Budget')}", []),  # not as printed
])
def test_the_printed_block_is_found_only_where_the_kit_printed_it(cell, found):
    from kit.record import replace_result, result_blocks

    assert result_blocks(cell, BLOCK) == found
    if len(found) == 1:
        assert replace_result(cell, BLOCK) == cell.replace(EARLIER, BLOCK)
        crlf = cell.replace("\n", "\r\n")
        assert replace_result(crlf, BLOCK) == crlf.replace(EARLIER.replace("\n", "\r\n"), BLOCK.replace("\n", "\r\n"))
    else:
        with pytest.raises(ValueError, match=f"{len(found)} blocks"):
            replace_result(cell, BLOCK)


def test_text_only_goes_on_past_a_notebook_it_cannot_refresh_and_names_it(tmp_path):
    nbs, out = tmp_path / "nbs", tmp_path / "reports"
    nbs.mkdir()
    for name in ("a", "b", "c"):
        notebook(nbs / f"{name}.ipynb", GOOD)
    assert kit_run(nbs / "a.ipynb", nbs / "c.ipynb", "--quick", "--out", out).returncode == 0
    (nbs / "c.ipynb").chmod(0o444)  # read-only: refused, not replaced behind its owner's back
    (out / "c.ipynb").chmod(0o444)
    done = kit_run(nbs, "--text-only", "--out", out)
    assert done.returncode == 1 and "refreshed the text of" in done.stdout and "a.ipynb" in done.stdout
    assert "b.ipynb: no report to refresh" in done.stderr and "c.ipynb is read-only" in done.stderr
    assert "2 notebook(s) not refreshed: b.ipynb, c.ipynb" in done.stderr and "Traceback" not in done.stderr


def test_figures_reach_the_report_whatever_the_shell_chose(tmp_path):
    notebook(tmp_path / "plot.ipynb", "import matplotlib.pyplot as plt\nplt.plot([1, 2]);\nplt.show()")
    done = kit_run(tmp_path / "plot.ipynb", "--out", tmp_path / "r", env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "r" / "plot_files").glob("*.png"))


def test_a_relative_data_root_is_the_one_kit_run_was_started_in(tmp_path):
    (tmp_path / "nbs").mkdir()
    notebook(tmp_path / "nbs" / "where.ipynb", "import kit.data\nprint('ROOT', kit.data.data_root())")
    done = kit_run(tmp_path / "nbs" / "where.ipynb", "--out", tmp_path / "r", cwd=tmp_path,
                   env={**os.environ, "KIT_DATA": "data"})
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "r" / "where.ipynb").read_text()
    # the report names no folder of this machine: the kernel's root, the one the batch resolved, reads $KIT_DATA
    assert "ROOT $KIT_DATA" in text and "nbs/data" not in text and str(tmp_path) not in text


def test_an_unexpected_error_shows_no_traceback_unless_asked(tmp_path):
    bad = tmp_path / "x.metrics.json"
    bad.write_text("{")
    done = subprocess.run([sys.executable, "-m", "kit", "rf", "kit.train:Trainer", "--input", "1,28,28"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "cannot be built without arguments" in done.stderr and "Traceback" not in done.stderr
    debug = subprocess.run([sys.executable, "-m", "kit", "--debug", "rf", "kit.train:Trainer", "--input", "1,28,28"],
                           capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
