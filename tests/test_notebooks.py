"""The notebooks as their authors keep them (no outputs), the studies on other data, and the templates."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kit.check import check

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ASSIGNMENTS = NOTEBOOKS / "assignments"
SOLUTION = ASSIGNMENTS / "mnist_4_steps" / "solution"
TEMPLATE = ASSIGNMENTS / "mnist_4_steps" / "template"


def test_source_notebooks_carry_no_outputs():
    for path in NOTEBOOKS.rglob("*.ipynb"):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name} has outputs"


def kit_run(*args, out):
    done = subprocess.run([sys.executable, "-m", "kit", "run", *map(str, args), "--quick", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=1200,
                          env={k: v for k, v in os.environ.items() if k != "KIT_QUICK"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_the_distillation_study_runs_on_a_generated_image_folder(tmp_path):
    from kit.formats import generated, write_image_folder

    classes = ["n01443537", "n01629819", "n01641577"]
    write_image_folder(tmp_path / "tiny" / "train", generated("tiny", 60, (3, 64, 64), classes, seed=0))
    write_image_folder(tmp_path / "tiny" / "val", generated("tiny", 30, (3, 64, 64), classes, seed=1))
    rows = kit_run(ASSIGNMENTS / "distillation.ipynb", "-p", "dataset", tmp_path / "tiny", "-p", "seeds", "[1]",
                   out=tmp_path / "out")
    assert rows[0]["status"] == "ok"
    record = json.loads((tmp_path / "out" / "distillation.metrics.json").read_text())
    assert [r["name"] for r in record["runs"]] == [f"{n} · seed 1" for n in (
        "teacher", "teacher + EMA", "student", "student + EMA", "student + KD")]
    assert {r["data"] for r in record["runs"]} == {"tiny"} and record["headline"] == "student + KD · seed 1"


def test_the_student_folder_is_what_kit_assign_generates(tmp_path):
    from kit.assign import assign

    assert assign(SOLUTION, check=True) == []
    edited = tmp_path / "template"
    shutil.copytree(TEMPLATE, edited)
    nb = nbformat.read(edited / "step2.ipynb", 4)
    nb.cells[-1].source += "\nA hint only the student copy has."
    nbformat.write(nb, edited / "step2.ipynb")
    problems = assign(SOLUTION, edited, check=True)
    assert problems == [f"{edited / 'step2.ipynb'}: differs from what `python -m kit assign {SOLUTION}` generates"]


def test_assign_check_sees_a_step_added_in_a_sub_folder_but_not_jupyters_checkpoints(tmp_path):
    from kit.assign import assign

    edited = tmp_path / "template"
    shutil.copytree(TEMPLATE, edited)
    (edited / ".ipynb_checkpoints").mkdir()
    shutil.copy(edited / "step1.ipynb", edited / ".ipynb_checkpoints" / "step1-checkpoint.ipynb")
    assert assign(SOLUTION, edited, check=True) == []
    (edited / "extra").mkdir()
    shutil.copy(edited / "step1.ipynb", edited / "extra" / "step5.ipynb")
    assert assign(SOLUTION, edited, check=True) == [f"{edited / 'extra' / 'step5.ipynb'}: has no solution notebook "
                                                    f"it comes from"]


@pytest.mark.parametrize("folder, message", [
    (TEMPLATE, "no notebook marks what the student writes"),  # a folder without markers is not a solution
    (SOLUTION.parent / "nowhere", "no such folder"),
])
def test_assign_refuses_a_folder_that_is_not_a_solution(folder, message, tmp_path):
    from kit.assign import assign

    with pytest.raises((ValueError, FileNotFoundError), match=message):
        assign(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_assign_refuses_an_out_that_is_a_file_and_keeps_it(tmp_path):
    from kit.assign import assign

    (tmp_path / "notes").write_text("mine")
    with pytest.raises(ValueError, match="is a file; --out names the student's folder"):
        assign(SOLUTION, tmp_path / "notes")
    assert (tmp_path / "notes").read_text() == "mine"


def test_a_template_stubs_the_model_and_asks_for_the_texts():
    for step in ("step1", "step2", "step3", "step4"):
        nb = nbformat.read(TEMPLATE / f"{step}.ipynb", 4)
        model = next(c.source for c in nb.cells if "model" in c.metadata.get("tags", []))
        assert "raise NotImplementedError(" in model and "BEGIN SOLUTION" not in model and "nn.Sequential" not in model
        assert "reference solution" not in nb.cells[0].source and f"template/{step}.ipynb" in nb.cells[0].source
        assert any(c.source.startswith("## Result\nTODO") for c in nb.cells)


def test_the_templates_fail_the_checker_until_they_are_filled(tmp_path):
    found = check([TEMPLATE])
    for step in ("step1", "step2", "step3", "step4"):
        rules = {v.rule for v in found if v.path.stem == step}
        assert {"structure/sections", "budget/parameters"} <= rules, (step, rules)


def test_a_students_copy_passes_once_it_is_filled_run_and_checked(tmp_path):
    """The README's workflow: copy the template, fill it in, run it, check it. The run here is the reference
    solution's own (its code is what a student who solved it would have), so the test takes its reports."""
    from kit.assign import filled

    root = tmp_path / "course"
    shutil.copytree(NOTEBOOKS.parent / "kit", root / "kit", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pyproject.toml").write_text((NOTEBOOKS.parent / "pyproject.toml").read_text())
    copy = root / "notebooks" / "assignments" / "my_submission"
    shutil.copytree(TEMPLATE, copy)  # step 1 of the workflow: cp -r .../template .../my_submission
    reports = root / "reports" / "assignments" / "my_submission"
    reports.mkdir(parents=True)
    solved_reports = NOTEBOOKS.parent / "reports" / "assignments" / "mnist_4_steps" / "solution"
    for step in ("step1", "step2", "step3", "step4"):
        solved, mine = nbformat.read(SOLUTION / f"{step}.ipynb", 4), nbformat.read(copy / f"{step}.ipynb", 4)
        mine = filled(mine, solved)  # the code
        for cell, theirs in zip(mine.cells, solved.cells):  # and the student's own Target, Result and Analysis
            if cell.cell_type == "markdown" and cell.source.split("\n")[0] in ("## Target", "## Result", "## Analysis"):
                cell.source = theirs.source.replace("../../../../reports/", "../../../reports/")  # one folder up
        nbformat.write(mine, copy / f"{step}.ipynb")
        for name in (f"{step}.ipynb", f"{step}.metrics.json"):  # step 2: the run
            shutil.copy(solved_reports / name, reports / name)
        ran = nbformat.read(reports / f"{step}.ipynb", 4)
        ran.metadata.papermill.input_path = f"../../../notebooks/assignments/my_submission/{step}.ipynb"  # as run here
        nbformat.write(ran, reports / f"{step}.ipynb")
    search = Path("reports") / "assignments" / "mnist_4_steps" / "search.json"  # records step 4's Analysis links to
    (root / search).parent.mkdir(parents=True)
    shutil.copy(NOTEBOOKS.parent / search, root / search)
    refresh = subprocess.run([sys.executable, "-m", "kit", "run", str(copy), "--text-only"], capture_output=True,
                             text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert refresh.returncode == 0, refresh.stderr
    found = subprocess.run([sys.executable, "-m", "kit", "check", str(copy)], capture_output=True, text=True,
                           cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert found.returncode == 0, found.stdout + found.stderr  # step 3: check: exit 0
