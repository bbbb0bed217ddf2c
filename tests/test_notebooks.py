"""The notebooks as their authors keep them (no outputs), the studies on other data, and the templates."""
import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_the_templates_fail_the_checker_until_they_are_filled(tmp_path):
    import shutil

    import nbformat

    from kit.check import check

    found = check([TEMPLATE])
    for step in ("step1", "step2", "step3", "step4"):
        rules = {v.rule for v in found if v.path.stem == step}
        assert {"structure/sections", "budget/parameters"} <= rules, (step, rules)
    # Filled in: a copy of the template that takes the solution's text, model and budget, with its run's metrics.
    submission = tmp_path / "my_submission"
    shutil.copytree(TEMPLATE, submission)
    reports = NOTEBOOKS.parent / "reports" / "assignments" / "mnist_4_steps" / "solution"
    for step in ("step1", "step2", "step3", "step4"):
        solved, filled = nbformat.read(SOLUTION / f"{step}.ipynb", 4), nbformat.read(submission / f"{step}.ipynb", 4)
        answer = {key(c): c.source for c in solved.cells if key(c)}
        for cell in filled.cells:
            if key(cell) in answer:
                cell.source = answer[key(cell)]
        nbformat.write(filled, submission / f"{step}.ipynb")
        shutil.copy(reports / f"{step}.metrics.json", submission / f"{step}.metrics.json")
    assert check([submission]) == []


def key(cell):
    """Which part of a step a cell is: its title, its budget or its model."""
    if cell.cell_type == "markdown" and cell.source.startswith(("# Step", "## Target", "## Result", "## Analysis")):
        return cell.source.split("\n")[0].split(" ·")[0]
    if "model" in cell.metadata.get("tags", []):
        return "model"
    if "budget = kit.Budget(" in cell.source:
        return "budget"
    return None
