"""Each rule of `python -m kit check` on small notebooks built here: one case that holds, one that breaks."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kit import colab
from kit.check import check

ROOT = Path(__file__).resolve().parent.parent
md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell

RESULT = "## Result\n- Parameters: 7,416\n- Best train accuracy: 99.78% (epoch 15)\n- Best test accuracy: 99.39% (epoch 14)"
BUDGET = "budget = kit.Budget(max_parameters=8000, max_epochs=15, target_test_acc=99.0, consistent_epochs=3)"


def metrics(**changes):
    history = [{"epoch": e, "train_loss": 0.1, "train_acc": 99.0, "test_loss": 0.05, "test_acc": 99.2, "lr": 0.1,
                "seconds": 1.0} for e in range(1, 16)]
    history[13]["test_acc"] = 99.39
    history[14]["train_acc"] = 99.78
    m = {"parameters": 7416, "epochs": 15, "best_train_acc": 99.78, "best_train_epoch": 15, "best_test_acc": 99.39,
         "best_test_epoch": 14, "last_test_acc": [99.2, 99.39, 99.2], "device": "cpu", "quick": False,
         "history": history}
    m.update(changes)
    return m


def build(folder: Path, name="step.ipynb", *, cells=None, result=RESULT, budget=BUDGET, metrics_=None,
          badge=True, model="model = kit.CompactNet()", executed=False):
    """A notebook that passes every rule, unless told otherwise, plus its metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    params = code("epochs = 15\nquick = False")
    params.metadata["tags"] = ["parameters"]
    model_cell = code(model)
    model_cell.metadata["tags"] = ["model"]
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else name
    nb = nbformat.v4.new_notebook(cells=cells if cells is not None else [
        md("# A step\n\n" + (colab.badge(rel) if badge else "")),
        md("## Target\n- Reach 99% with a small model."),
        params, code("import kit\n" + budget), model_cell,
        md(result), md("## Analysis\n- It works; next, make it lighter."),
    ])
    if executed:
        nb.metadata["papermill"] = {"input_path": name}
    nbformat.write(nb, path)
    if metrics_ is not False:
        (folder / f"{path.stem}.metrics.json").write_text(json.dumps(metrics_ or metrics()))
    return path


def rules(paths):
    return sorted({v.rule for v in check([paths] if not isinstance(paths, list) else paths)})


def test_a_good_notebook_passes(tmp_path):
    assert check([build(tmp_path)]) == []


# --- structure ---

def test_sections_missing_out_of_order_empty_or_placeholder(tmp_path):
    p = build(tmp_path, result="## Result\n- Parameters: TODO")
    assert "structure/sections" in rules(p)
    nb = nbformat.read(p, 4)
    nb.cells[1], nb.cells[6] = nb.cells[6], nb.cells[1]  # Analysis before Target
    nbformat.write(nb, p)
    assert any("in that order" in v.message for v in check([p]))
    nb.cells = [c for c in nb.cells if not c.source.startswith("## Analysis")]
    nbformat.write(nb, p)
    assert any("no Markdown cell titled 'Analysis'" in v.message for v in check([p]))
    empty = build(tmp_path, "e.ipynb", result="## Result\n")
    assert any("'Result' cell is empty" in v.message for v in check([empty]))


def test_exactly_one_parameters_cell(tmp_path):
    p = build(tmp_path)
    nb = nbformat.read(p, 4)
    nb.cells[2].metadata["tags"] = []
    nbformat.write(nb, p)
    assert rules(p) == ["structure/parameters"]
    nb.cells[2].metadata["tags"] = ["parameters"]
    nb.cells[3].metadata["tags"] = ["parameters"]
    nbformat.write(nb, p)
    assert rules(p) == ["structure/parameters"]


def test_source_notebooks_carry_no_outputs(tmp_path):
    p = build(tmp_path)
    nb = nbformat.read(p, 4)
    nb.cells[3].execution_count = 4
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    nbformat.write(nb, p)
    assert rules(p) == ["structure/outputs"]
    nb.metadata["papermill"] = {}  # an executed copy may have them
    nbformat.write(nb, p)
    assert "structure/outputs" not in rules(p)


def test_colab_badge_points_at_the_notebook_itself(tmp_path):
    assert rules(build(tmp_path, badge=False)) == ["structure/colab-badge"]
    p = build(tmp_path)
    nb = nbformat.read(p, 4)
    nb.cells[0].source = "# A step\n\n" + colab.badge("notebooks/another.ipynb")
    nbformat.write(nb, p)
    assert any("not " + colab.REPOSITORY for v in check([p]) for _ in [v] if v.rule == "structure/colab-badge")


def test_colab_badge_of_a_repository_notebook_uses_its_full_path():
    bad = [v for v in check([ROOT / "notebooks"]) if v.rule == "structure/colab-badge"]
    assert bad == []


# --- budget ---

def test_budget_must_be_declared_once_with_literals(tmp_path):
    assert rules(build(tmp_path, budget="")) == ["budget/declared"]
    twice = build(tmp_path, "t.ipynb", budget=BUDGET + "\n" + BUDGET)
    assert rules(twice) == ["budget/declared"]
    loose = build(tmp_path, "l.ipynb", budget="limit = 8000\nbudget = kit.Budget(max_parameters=limit, max_epochs=15, target_test_acc=99.0)")
    assert any("literal arguments" in v.message for v in check([loose]))


def test_parameters_within_budget_recorded_and_counted(tmp_path):
    over = build(tmp_path, metrics_=metrics(parameters=9000))
    assert any("recorded 9,000 parameters, over the budget of 8,000" in v.message for v in check([over]))
    big = build(tmp_path, "big.ipynb", model="model = nn.Conv2d(1, 100, 9)")
    assert any("the model has 8,200 parameters" in v.message for v in check([big]))
    broken = build(tmp_path, "broken.ipynb", model="model = kit.NoSuchNet()")
    assert any("do not build" in v.message for v in check([broken]))


def test_epochs_within_budget(tmp_path):
    p = build(tmp_path, budget=BUDGET.replace("max_epochs=15", "max_epochs=14").replace("consistent_epochs=3", "consistent_epochs=2"))
    assert any(v.rule == "budget/epochs" and "used 15 epochs" in v.message for v in check([p]))


def test_a_missed_budget_passes_only_where_the_result_says_so(tmp_path):
    m = metrics()
    m["history"][-1]["test_acc"] = 98.9
    said = RESULT + "\n- Last 3 test accuracies: 99.20, 99.39, 98.90: the budget (99.0% in each) is missed."
    assert check([build(tmp_path, result=said, metrics_=m)]) == []
    wrong = build(tmp_path, "w.ipynb", result=RESULT + "\n- The budget is met.", metrics_=m)
    assert rules(wrong) == ["budget/consistency", "claims/budget"]
    modest = build(tmp_path, "m.ipynb", result=RESULT + "\n- The budget is missed.")  # metrics() meets it
    assert [v.message for v in check([modest])] == ["the Result says the budget is missed; the run meets it"]


def test_consistently_means_every_one_of_the_last_k(tmp_path):
    m = metrics()
    m["history"][-2]["test_acc"] = 98.9  # one dip below 99.0 among the last three
    p = build(tmp_path, metrics_=m)
    assert [v.rule for v in check([p])] == ["budget/consistency"]
    ok = build(tmp_path, "ok.ipynb", budget=BUDGET.replace("consistent_epochs=3", "consistent_epochs=1"), metrics_=m)
    assert check([ok]) == []


# --- claims ---

@pytest.mark.parametrize("claim,rule", [
    ("- Parameters: 7,417", "claims/parameters"),
    ("- Parameters: 7.5k", "claims/parameters"),
    ("- Best train accuracy: 99.80% (epoch 15)", "claims/best-train"),
    ("- Best train accuracy: 99.78% (epoch 12)", "claims/best-train-epoch"),
    ("- Best train accuracy: 99.78%", "claims/best-train-epoch"),
    ("- Best test accuracy: 99.45% (epoch 14)", "claims/best-test"),
    ("- Best test accuracy: 99.39% (epoch 9)", "claims/best-test-epoch"),
])
def test_a_result_that_disagrees_is_a_violation(tmp_path, claim, rule):
    key = claim.split(":")[0]
    lines = [claim if line.startswith(key) else line for line in RESULT.splitlines()]
    v = [x for x in check([build(tmp_path, result="\n".join(lines))]) if x.rule.startswith("claims")]
    assert [x.rule for x in v] == [rule]
    assert "claims" in v[0].message and "recorded" in v[0].message


def test_claims_are_compared_at_the_printed_precision(tmp_path):
    result = "## Result\n- Parameters: 7.4k\n- Best train accuracy: 99.8 (15th epoch)\n- Best test accuracy: 99.4 (14th epoch)"
    assert check([build(tmp_path, result=result)]) == []


def test_claims_without_metrics_or_numbers(tmp_path):
    assert rules(build(tmp_path, metrics_=False)) == ["claims/unverified"]
    vague = build(tmp_path, "v.ipynb", result="## Result\n- Pretty good accuracy.")
    assert rules(vague) == ["claims/missing"]


def test_a_smoke_run_is_not_held_to_the_reference_claims(tmp_path):
    quick = metrics(quick=True, best_test_acc=91.2, best_test_epoch=1, epochs=1)
    quick["history"] = quick["history"][:1]
    assert check([build(tmp_path, metrics_=quick, executed=True)]) == []


# --- sanity ---

def test_nan_loss_and_accuracy_reported_with_it(tmp_path):
    m = metrics()
    m["history"][2]["train_loss"] = float("nan")
    p = build(tmp_path, metrics_=m)
    assert rules(p) == ["sanity/accuracy-with-nan-loss", "sanity/non-finite-loss"]


def test_exactly_100_percent_is_flagged(tmp_path):
    m = metrics()
    m["history"][0]["test_acc"] = 100.0
    assert rules(build(tmp_path, metrics_=m)) == ["sanity/perfect-accuracy"]


# --- assignment rules ---

def test_assignment_wants_exactly_its_steps_each_with_an_rf_table(tmp_path):
    folder = tmp_path / "submission"
    for i in (1, 2, 3):
        build(folder, f"step{i}.ipynb")
    (folder / "assignment.json").write_text(json.dumps({"steps": 4, "rf_table": True}))
    found = check([folder])
    assert any(v.rule == "assignment/steps" and "3 step notebooks" in v.message for v in found)
    assert sum(v.rule == "assignment/rf-table" for v in found) == 3
    for i in (1, 2, 3, 4):
        p = build(folder, f"step{i}.ipynb")
        nb = nbformat.read(p, 4)
        nb.cells.append(code("kit.rf.receptive_field(model, (1, 28, 28))"))
        nbformat.write(nb, p)
    assert check([folder]) == []


# --- the command line and the repository itself ---

def test_cli_prints_path_rule_message_and_exits_1(tmp_path):
    p = build(tmp_path, metrics_=metrics(best_test_acc=99.2))
    done = subprocess.run([sys.executable, "-m", "kit", "check", str(p)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.strip() == f"{p}: claims/best-test: claims 99.39, recorded 99.2"
    good = subprocess.run([sys.executable, "-m", "kit", "check", str(build(tmp_path, "g.ipynb"))],
                          capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout == ""


def test_the_repository_passes_its_own_checker():
    found = check([ROOT / "notebooks", ROOT / "reports"])
    assert found == [], "\n".join(map(str, found))


# --- notebooks that train several runs (seeds, variants) ---

def multi_run_metrics():
    first = metrics()
    second = metrics(best_train_acc=99.5, best_train_epoch=14, best_test_acc=99.41, best_test_epoch=12)
    second["history"][11]["test_acc"] = 99.41
    return {**first, "runs": [{"name": "seed 1", **first, "budget": {"held": True}},
                              {"name": "seed 2", **second, "budget": {"held": True}}]}


MULTI_RESULT = ("## Result\n- Parameters: 7,416\n"
                "- seed 1: best train accuracy 99.78% (epoch 15), best test accuracy 99.39% (epoch 14)\n"
                "- **seed 2**: best train accuracy 99.50% (epoch 14), best test accuracy 99.41% (epoch 12)")


def test_each_run_is_claimed_on_its_own_line(tmp_path):
    assert check([build(tmp_path, result=MULTI_RESULT, metrics_=multi_run_metrics())]) == []
    wrong = build(tmp_path, "w.ipynb", result=MULTI_RESULT.replace("99.41% (epoch 12)", "99.45% (epoch 12)"),
                  metrics_=multi_run_metrics())
    assert [str(v).split(": ", 1)[1] for v in check([wrong])] == ["claims/best-test: seed 2: claims 99.45, recorded 99.41"]
    left_out = build(tmp_path, "l.ipynb", result="\n".join(MULTI_RESULT.splitlines()[:3]), metrics_=multi_run_metrics())
    assert [v.rule for v in check([left_out])] == ["claims/runs"]
    assert "seed 2" in check([left_out])[0].message


def test_every_run_held_to_the_budget_must_meet_it(tmp_path):
    m = multi_run_metrics()
    m["runs"][1]["history"][-1]["test_acc"] = 98.5  # seed 2 dips in its last epoch
    found = check([build(tmp_path, result=MULTI_RESULT, metrics_=m)])
    assert [(v.rule, v.message.split(":")[0]) for v in found] == [("budget/consistency", "seed 2")]
    m["runs"][1]["budget"] = None  # a run that is not held to the budget (a teacher, say)
    assert check([build(tmp_path, "t.ipynb", result=MULTI_RESULT, metrics_=m)]) == []


# --- the report of a source notebook ---

def test_a_report_must_show_the_notebooks_own_code_and_text(tmp_path):
    from kit.run import refresh_text

    source = build(tmp_path / "notebooks", metrics_=False)
    reports = tmp_path / "reports"
    report = build(reports, executed=True)
    assert check([source]) == []
    nb = nbformat.read(source, 4)
    nb.cells[-1].source = "## Analysis\n- Rewritten after the run."
    nbformat.write(nb, source)
    assert rules(source) == ["report/stale-text"]
    refresh_text(source, reports)
    assert check([source]) == [] and "Rewritten" in report.read_text()
    nb.cells[3].source += "\nprint('changed')"
    nbformat.write(nb, source)
    assert rules(source) == ["report/stale-code"]
    with pytest.raises(ValueError, match="run it again"):
        refresh_text(source, reports)


def test_the_colab_install_line_uses_the_configured_repository(tmp_path):
    p = build(tmp_path)
    nb = nbformat.read(p, 4)
    nb.cells.insert(1, code(f'%pip install "drill-down-kit @ git+https://github.com/{colab.REPOSITORY}@{colab.BRANCH}"'))
    nbformat.write(nb, p)
    assert check([p]) == []
    nb.cells[1].source = '%pip install "drill-down-kit @ git+https://github.com/someone/fork@main"'
    nbformat.write(nb, p)
    assert rules(p) == ["structure/colab-install"]


def test_a_template_folder_is_checked_only_when_named(tmp_path):
    template = tmp_path / "assignment" / "template"
    build(template, result="## Result\n- Parameters: TODO", metrics_=False)
    assert check([tmp_path / "assignment"]) == []
    assert "structure/sections" in rules(template)


def test_the_last_step_must_hold_itself_to_the_assignments_budget(tmp_path):
    folder = tmp_path / "submission"
    for i in (1, 2):
        p = build(folder, f"step{i}.ipynb")
    spec = {"steps": 2, "budget": {"max_parameters": 8000, "max_epochs": 15, "target_test_acc": 99.4,
                                   "consistent_epochs": 3}}
    (folder / "assignment.json").write_text(json.dumps(spec))
    found = [v for v in check([folder]) if v.rule == "assignment/budget"]  # BUDGET asks only 99.0%
    assert {v.path for v in found} == {p}
    assert [v.message.split(":")[0] for v in found] == ["the last step's budget is looser than the assignment's",
                                                         "the last step misses the assignment's budget"]
    assert "target_test_acc 99.0 (the assignment's: 99.4)" in found[0].message
    spec["budget"]["target_test_acc"] = 99.0
    (folder / "assignment.json").write_text(json.dumps(spec))
    assert check([folder]) == []
    m = metrics()
    m["history"][-1]["test_acc"] = 98.9  # the last step misses, and says so: honest, but not a solution
    build(folder, "step2.ipynb", result=RESULT + "\n- The budget is missed.", metrics_=m)
    found = check([folder])
    assert [v.rule for v in found] == ["assignment/budget"] and "misses the assignment's budget" in found[0].message
