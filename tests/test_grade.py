"""`python -m kit grade`: a submission re-run and judged against the fresh run (smoke runs here, as CI can afford)."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "notebooks" / "assignments" / "mnist_4_steps" / "solution"


def grade(folder, out):
    return subprocess.run([sys.executable, "-m", "kit", "grade", str(folder), "--quick", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)


def test_the_reference_solution_passes_and_a_tampered_copy_fails_naming_the_rule(tmp_path, mnist_root):
    done = grade(SOLUTION, tmp_path / "graded")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    sheet = (tmp_path / "graded" / "grade.md").read_text()
    assert "| step4.ipynb | budget/parameters · seed 1 | yes | at most 9,999 | 9,930 |" in sheet
    assert "| step4.ipynb | assignment/rf-table | yes |  |  | shown by the rerun |" in sheet
    assert (tmp_path / "graded" / "grade.csv").read_text().startswith("step,rule,held,claimed,measured,note")

    tampered = tmp_path / "tampered"
    shutil.copytree(SOLUTION, tampered)
    nb = nbformat.read(tampered / "step4.ipynb", 4)
    model = next(c for c in nb.cells if "model" in c.metadata.get("tags", []))
    # an extra layer of 7,808 weights, unused in the forward pass: every parameter counts
    model.source = model.source.replace("self.head = kit.GapHead(",
                                        "self.extra = nn.Conv2d(1, 64, 11)\n        self.head = kit.GapHead(")
    assert "self.extra" in model.source
    nbformat.write(nb, tampered / "step4.ipynb")
    (tampered / "assignment.json").write_text((tampered / "assignment.json").read_text().replace("9999", "99999"))
    done = grade(tampered, tmp_path / "graded-tampered")
    assert done.returncode == 1
    assert "| step4.ipynb | budget/parameters · seed 1 | **no** | at most 9,999 |" in done.stdout
    assert "assignment/rules-edited" in done.stdout  # the instructor's rules were applied, not the copy's


def test_the_grade_judges_what_the_fresh_run_did_not_what_its_code_recorded(tmp_path, mnist_root):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(SOLUTION / "assignment.json", sub)
    nb = nbformat.read(SOLUTION / "step3.ipynb", 4)
    fit = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("trainer = kit.Trainer("))
    # a warm-up no variable keeps: its 15 epochs count, on top of the run's own
    fit.source = "kit.Trainer(model, train_loader, test_loader, epochs=15, lr=lr).fit()\n" + fit.source
    fit.source = "kit.train.CHECK_EVERY = 25  # a setting of the kit changed: the run says so\n" + fit.source
    said = next(c for c in nb.cells if c.cell_type == "code" and "setup.result(" in c.source)
    said.source = "setup.result(trainer, None);"  # held to no budget
    rf = next(c for c in nb.cells if c.cell_type == "code" and "receptive_field(" in c.source)
    rf.source = "table = kit.rf.receptive_field(model, (1, 28, 28))"  # worked out, never shown
    nbformat.write(nb, sub / "step3.ipynb")
    done = grade(sub, tmp_path / "graded")
    assert done.returncode == 1
    sheet = (tmp_path / "graded" / "grade.md").read_text()
    assert "| step3.ipynb | assignment/rf-table | **no** |  |  | the receptive-field cell showed no table" in sheet
    assert "| step3.ipynb | sanity/kit-changed | **no** |  |  | the notebook changed the kit" in sheet
    assert "(kit.train.CHECK_EVERY)" in sheet
    assert "| step3.ipynb | sanity/kit-assigned | **no** |  |  | code cell " in sheet  # read from the code too
    assert "| step3.ipynb | budget/epochs | **no** | at most 15 | 16 |" in sheet
    assert "| step3.ipynb | budget/declared | **no** |" in sheet
    assert "| step3.ipynb | grade/run | yes |" in sheet

    fit.source = "raise RuntimeError('broken')\n" + fit.source  # graded again into the same folder: it fails
    nbformat.write(nb, sub / "step3.ipynb")
    done = grade(sub, tmp_path / "graded")
    sheet = (tmp_path / "graded" / "grade.md").read_text()
    assert done.returncode == 1 and "| step3.ipynb | grade/run | **no** |" in sheet
    assert "| step3.ipynb | assignment/rf-table | **no** |  |  | not shown: the rerun stopped" in sheet
    # the sheet names the cell and the error the rerun stopped at, never the record an earlier grade left
    assert "the rerun stopped at cell" in sheet and "RuntimeError: broken" in sheet


def test_where_the_rerun_repeats_the_run_every_figure_must_be_the_fresh_runs(tmp_path, mnist_root):
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    params = code("epochs = 2\nquick = False\ndevice = 'auto'")
    params.metadata["tags"] = ["parameters"]
    model = code("model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), "
                 "nn.Linear(8, 10))")
    model.metadata["tags"] = ["model"]
    cells = [md("# A step"), md("## Target\n- Learn something."), params,
             code("import kit\nfrom torch import nn\nbudget = kit.Budget(max_parameters=9999, max_epochs=15, "
                  "target_test_acc=10.0, consistent_epochs=1)\nsetup = kit.setup(epochs=epochs, device=device, "
                  "quick=quick)\ntrain_loader, test_loader = kit.make_loaders('mnist', device='cpu', limit=300)"),
             model, code("print(kit.rf.receptive_field(model, (1, 28, 28)))"),
             code("trainer = kit.Trainer(model, train_loader, test_loader, epochs=setup.epochs, lr=0.05)\n"
                  "trainer.fit()\nsetup.result(trainer, budget);"),
             md("## Result\n- Parameters: 170"),
             md("## Analysis\n- It reached 99.97% test accuracy.\n- [This step's own record](step1.ipynb) says "
                "99.96%.\n- A search ([its records](search.json)) found 4,321 parameters enough.\n"
                "- [The step's record itself](step1.metrics.json) says 99.96% too.")]
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(SOLUTION / "assignment.json", sub)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), sub / "step1.ipynb")
    full = {k: v for k, v in os.environ.items() if k != "KIT_QUICK"}  # full runs, not the suite's smoke runs
    own = subprocess.run([sys.executable, "-m", "kit", "run", str(sub / "step1.ipynb"), "--device", "cpu", "--out",
                          str(tmp_path / "own")], capture_output=True, text=True, timeout=600, env=full)
    assert own.returncode == 0, own.stderr[-2000:]
    # the submission brings its own record, edited, and a search's records that no grade reruns
    record = json.loads((tmp_path / "own" / "step1.metrics.json").read_text())
    record["runs"][0]["history"][0]["test_acc"] = 99.96
    (sub / "step1.metrics.json").write_text(json.dumps(record))
    (sub / "search.json").write_text(json.dumps({"best": {"parameters": 4321}}))
    subprocess.run([sys.executable, "-m", "kit", "grade", str(sub), "--device", "cpu", "--out",
                    str(tmp_path / "graded")], capture_output=True, text=True, timeout=600, env=full)
    sheet = (tmp_path / "graded" / "grade.md").read_text()
    assert "exact: the same kind of device" in sheet, sheet
    assert "| step1.ipynb | claims/analysis | **no** | 99.97% |" in sheet
    # a linked step is judged by its fresh run, never by the record the submission brought
    for paragraph in ("- [This step's own record]", "- [The step's record itself]"):
        assert f"| step1.ipynb | claims/analysis | **no** | 99.96% |  | '{paragraph}" in sheet
    # a figure only a file the grade did not rerun holds is named for the TA, not taken as confirmed
    assert "| step1.ipynb | claims/not-rerun | yes | 4,321 |  | '- A search ([its records](search.json)) found" in sheet
    assert "held only by search.json, which this grade did not rerun" in sheet
    rows = list(csv.reader((tmp_path / "graded" / "grade.csv").read_text().splitlines()))
    assert [r[1:4] for r in rows if r[3] == "4,321"] == [["claims/not-rerun", "yes", "4,321"]]
    assert "Of these, 1 (`claims/not-rerun`) hold only by files the grade did not rerun" in sheet
    assert "| step1.ipynb | assignment/budget | **no** |" in sheet  # its own budget is looser than the assignment's

    # the submission's own run came from elsewhere: its other figures are judged against its own record
    record["environment"]["threads"] += 1
    (sub / "step1.metrics.json").write_text(json.dumps(record))
    subprocess.run([sys.executable, "-m", "kit", "grade", str(sub), "--device", "cpu", "--out",
                    str(tmp_path / "elsewhere")], capture_output=True, text=True, timeout=600, env=full)
    sheet = (tmp_path / "elsewhere" / "grade.md").read_text()
    assert "within 0.15 accuracy points: the submission's own run came from another device" in sheet
    assert "| step1.ipynb | claims/analysis | **no** |" in sheet and "99.97%" in sheet
    assert "judged against the submission's own record" in sheet
    # and a submission that brings no record has nothing to judge its figures by: said, and not held
    (sub / "step1.metrics.json").unlink()
    subprocess.run([sys.executable, "-m", "kit", "grade", str(sub), "--device", "cpu", "--out",
                    str(tmp_path / "unrecorded")], capture_output=True, text=True, timeout=600, env=full)
    sheet = (tmp_path / "unrecorded" / "grade.md").read_text()
    assert "| step1.ipynb | claims/analysis | **no** |  |  | not judged: the submission brought no record" in sheet


def test_a_rerun_repeats_the_numbers_never_the_seconds():
    from kit.grade import _untimed

    text = "3 runs of 15 epochs, 150 to 154 s each; 12\u201314 min; one in 140 s; 99.41% over 3 seeds"
    assert _untimed(text).split() == ["3", "runs", "of", "15", "epochs,", "each;", ";", "one", "in", ";", "99.41%",
                                      "over", "3", "seeds"]


def test_a_rerun_is_held_to_exact_numbers_only_where_it_should_repeat_them():
    import copy
    import dataclasses

    from kit.grade import _repeatable
    from kit.record import Record

    theirs = Record.load(ROOT / "reports" / "assignments" / "mnist_4_steps" / "solution" / "step4.metrics.json")
    fresh = copy.deepcopy(theirs)
    assert _repeatable(theirs, fresh)
    assert not _repeatable(None, fresh)  # the submission brought no record
    fresh.runs[1].settings["channels_last"] = not fresh.runs[1].settings["channels_last"]  # another memory format
    assert not _repeatable(theirs, fresh)
    fresh = copy.deepcopy(theirs)
    fresh.environment = dataclasses.replace(fresh.environment, threads=fresh.environment.threads + 1)
    assert not _repeatable(theirs, fresh)
    fresh = copy.deepcopy(theirs)
    fresh.runs[0].settings["optimizer"] = "GraphSGD"  # another update's code: a captured step's against torch's SGD
    assert not _repeatable(theirs, fresh)
    # one CPU model name, other kernels (AVX2 against AVX-512), or a record that does not say which ran
    cpu = dataclasses.replace(theirs.environment, device="cpu", device_name="Intel(R) Xeon(R) Processor",
                              cpu_kernels="AVX512")
    theirs.environment = cpu
    fresh = copy.deepcopy(theirs)
    assert _repeatable(theirs, fresh)
    for kernels in ("AVX2", ""):
        fresh.environment = dataclasses.replace(cpu, cpu_kernels=kernels)
        assert not _repeatable(theirs, fresh)
    # on a GPU the CPU's kernels compute none of the numbers
    theirs.environment = dataclasses.replace(cpu, device="cuda", device_name="NVIDIA H200")
    fresh.environment = dataclasses.replace(theirs.environment, cpu_kernels="AVX2")
    assert _repeatable(theirs, fresh)


def test_a_clean_analysis_says_how_many_figures_were_judged(tmp_path):
    from kit.grade import _analysis_rows
    from kit.record import Record

    fresh = Record.load(ROOT / "reports" / "assignments" / "mnist_4_steps" / "solution" / "step3.metrics.json")
    best = fresh.runs[0].derived()["best_test_acc"]
    rows = _analysis_rows("step3.ipynb", f"- It reached {best:.2f}% at best.", fresh, tmp_path / "step3.ipynb", {}, 0)
    assert [(r.rule, r.held, r.measured) for r in rows] == [("claims/analysis", True, "1 figure")]
    rows = _analysis_rows("step3.ipynb", "- It reached 12.34% at best.", fresh, tmp_path / "step3.ipynb", {}, 0)
    assert [(r.rule, r.held, r.claimed) for r in rows] == [("claims/analysis", False, "12.34%")]
