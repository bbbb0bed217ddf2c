"""`python -m kit check PATH ...`: keep notebooks honest.

Each rule reads a notebook (source or executed by `python -m kit run`) and,
where one exists, the metrics its run recorded; each violation is one line,
`PATH: RULE: message`. Rules:

structure/sections    Target, Result and Analysis Markdown cells, in that order, filled in
structure/parameters  exactly one cell tagged `parameters`
structure/outputs     a source notebook carries no outputs and no execution counts
structure/colab-badge the Colab badge opens this notebook from the configured repository
structure/colab-install  the Colab set-up cell installs the kit from the configured repository
budget/declared       exactly one `budget = kit.Budget(...)` with literal arguments
budget/parameters     recorded (and, where a `model`-tagged cell builds it, counted) parameters within budget
budget/epochs         epochs used within budget
budget/consistency    each of the last K epochs at or above the target test accuracy
                      (for every run held to the budget, where a notebook trains several);
                      a missed budget passes only where the Result says it is missed
claims/budget         a Result that calls a missed budget met, or a met one missed
claims/unverified     a Result with no recorded metrics to confirm it
claims/missing        a Result that leaves out parameters, best train or best test accuracy
claims/parameters, claims/best-train, claims/best-train-epoch, claims/best-test, claims/best-test-epoch
                      the Result agrees with the metrics to the precision it prints
claims/runs           a notebook that trains several runs reports each on a line starting with its name
sanity/non-finite-loss, sanity/accuracy-with-nan-loss, sanity/perfect-accuracy
report/stale-code     a source notebook's report in reports/ ran exactly this notebook's code
report/stale-text     ... and shows its Markdown (refresh with `python -m kit run NOTEBOOK --text-only`)
assignment/steps      a folder with assignment.json holds exactly its number of step notebooks
assignment/rf-table   every step shows a receptive-field table
assignment/budget     the last step declares a budget at least as strict as assignment.json's "budget",
                      and its run (each run held to it) meets that budget

A folder named `template` is skipped when a parent folder is checked (a template
fails until it is filled); name it to check it.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from kit import colab
from kit.files import report_folder

SECTIONS = ("Target", "Result", "Analysis")
TEMPLATE = "template"  # a folder of student templates: checked only when named, since it fails until filled
PLACEHOLDER = re.compile(r"\bTODO\b|\bTBD\b|\bFILL ME\b|<[^>]*fill[^>]*>|\.\.\.\s*$|^\s*-\s*$", re.I | re.M)
INSTALL = re.compile(r"git\+https://github\.com/([^/\s@\"']+/[^/\s@\"']+?)(?:\.git)?@([^\s\"'#]+)")
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+/[^/\s)]+)/blob/[^/\s)]+/([^\s)]+\.ipynb)")


@dataclass(frozen=True)
class Violation:
    path: Path
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.message}"


# --- reading a notebook ---------------------------------------------------------------

def _heading(cell) -> str | None:
    """The title of a Markdown cell that starts with a heading, e.g. '## Result' -> 'Result'."""
    if cell.cell_type != "markdown":
        return None
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    m = re.match(r"#+\s*(.+?)\s*:?\s*$", first)
    return m.group(1).strip() if m else None


def _body(cell) -> str:
    lines = cell.source.strip().splitlines()
    return "\n".join(lines[1:]).strip()


def is_executed(nb) -> bool:
    return "papermill" in nb.metadata


def metrics_path(path: Path) -> Path | None:
    """The metrics of this notebook's run: beside it, else in its report folder (see kit.files.report_folder)."""
    beside = path.with_name(f"{path.stem}.metrics.json")
    if beside.exists():
        return beside
    folder = report_folder(path)
    if folder is not None and (folder / beside.name).exists():
        return folder / beside.name
    return None


def declared_budget(nb) -> tuple[list, list[str]]:
    """Every `Budget(...)` call in the code cells, with its literal keyword arguments."""
    from kit.record import Budget

    found, problems = [], []
    fields = list(Budget.__dataclass_fields__)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python_only(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "Budget":
                try:
                    args = dict(zip(fields, (ast.literal_eval(a) for a in node.args)))
                    args.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
                    found.append(Budget(**args))
                except (ValueError, TypeError) as e:
                    problems.append(f"Budget(...) must have literal arguments naming {', '.join(fields)}: {e}")
    return found, problems


def _python_only(source: str) -> str:
    """Cell source without IPython magics and shell escapes."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def count_model_parameters(nb) -> int | None:
    """Build the model from the cells tagged `model` (no training) and count its parameters."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "model" in c.metadata.get("tags", [])]
    if not cells:
        return None
    import torch  # noqa: F401  (the cells may use these names)
    from torch import nn

    import kit  # noqa: F401

    namespace = {"torch": torch, "nn": nn, "F": torch.nn.functional, "kit": kit}
    for c in cells:
        exec(compile(_python_only(c.source), "<model cell>", "exec"), namespace)
    model = namespace.get("model")
    if not isinstance(model, nn.Module):
        raise ValueError("the cells tagged `model` must leave an nn.Module named `model`")
    return kit.count_parameters(model)


# --- the Result cell ---------------------------------------------------------------------

NUMBER = r"(\d[\d,]*(?:\.\d+)?)\s*([kKmM]?)"
EPOCH = r"(?:\s*\(\s*(?:epoch\s*)?(\d+)(?:st|nd|rd|th)?(?:\s*epoch)?\s*\))?"  # "(epoch 14)", "(14th epoch)"
CLAIMS = {
    "parameters": re.compile(r"param(?:eter)?s?\W*[:=]?\s*" + NUMBER, re.I),
    "best-train": re.compile(r"best\s+train(?:ing)?\s+acc(?:uracy)?\W*[:=]?\s*(\d+(?:\.\d+)?)\s*%?" + EPOCH, re.I),
    "best-test": re.compile(r"best\s+test\s+acc(?:uracy)?\W*[:=]?\s*(\d+(?:\.\d+)?)\s*%?" + EPOCH, re.I),
}


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _agrees(claimed: str, recorded: float, scale: float = 1.0) -> bool:
    """Whether `recorded` rounds to the claimed number at the precision it was printed."""
    value = float(claimed.replace(",", ""))
    return round(recorded / scale, _decimals(claimed)) == round(value, _decimals(claimed))


def check_claims(path: Path, result: str, metrics: dict | None) -> list[Violation]:
    v = lambda rule, msg: Violation(path, f"claims/{rule}", msg)  # noqa: E731
    found = {name: rx.search(result) for name, rx in CLAIMS.items()}
    missing = [name for name, m in found.items() if m is None]
    out = [v("missing", f"the Result does not state: {', '.join(missing)}")] if missing else []
    if metrics is None:
        return out + [v("unverified", "no recorded metrics confirm the Result; run `python -m kit run` on it")]
    out += _compare(found, metrics, v, "")
    for run in metrics.get("runs", []):  # a notebook that trains several runs reports each on its own line
        lines = [line for line in result.splitlines() if _labels(line, run["name"])]
        if not lines:
            out.append(v("runs", f"the Result does not report the run '{run['name']}' "
                                 f"(a line that starts with '- {run['name']}:')"))
            continue
        line = lines[0]
        out += _compare({name: rx.search(line) for name, rx in CLAIMS.items()}, run, v, f"{run['name']}: ")
    return out


def _labels(line: str, name: str) -> bool:
    """Whether a Result line is about run `name`: '- seed 2: ...', '- **group norm**: ...'."""
    return re.match(rf"\s*[-*]?\s*\**{re.escape(name)}\**\s*[:(\u2014\u2013-]", line, re.I) is not None


def _compare(found: dict, metrics: dict, v, label: str) -> list[Violation]:
    """Each claim found against the recorded value, at the precision it was printed."""
    out = []
    if m := found["parameters"]:
        number, unit = m.group(1), m.group(2).lower()
        scale = {"k": 1e3, "m": 1e6}.get(unit, 1.0)
        if not _agrees(number, metrics["parameters"], scale):
            out.append(v("parameters", f"{label}claims {number}{m.group(2)}, recorded {metrics['parameters']:,}"))
    for rule, key in (("best-train", "best_train"), ("best-test", "best_test")):
        if not (m := found[rule]):
            continue
        if not _agrees(m.group(1), metrics[f"{key}_acc"]):
            out.append(v(rule, f"{label}claims {m.group(1)}, recorded {metrics[f'{key}_acc']:.4g}"))
        recorded = metrics[f"{key}_epoch"]
        if not m.group(2):
            out.append(v(f"{rule}-epoch", f"{label}claims no epoch for the {rule.replace('-', ' ')} accuracy; "
                                          f"give it, e.g. '(epoch {recorded})' as recorded"))
        elif int(m.group(2)) != recorded:
            out.append(v(f"{rule}-epoch", f"{label}claims epoch {m.group(2)}, recorded epoch {recorded}"))
    return out


# --- the rules -----------------------------------------------------------------------------

def check_structure(path: Path, nb, repo_path: str | None) -> list[Violation]:
    out = []
    titles = [(i, _heading(c)) for i, c in enumerate(nb.cells)]
    positions = []
    for section in SECTIONS:
        hits = [i for i, t in titles if t and t.lower() == section.lower()]
        if not hits:
            out.append(Violation(path, "structure/sections", f"no Markdown cell titled '{section}'"))
            continue
        positions.append(hits[0])
        body = _body(nb.cells[hits[0]])
        if not body:
            out.append(Violation(path, "structure/sections", f"the '{section}' cell is empty"))
        elif PLACEHOLDER.search(body):
            out.append(Violation(path, "structure/sections", f"the '{section}' cell is still a template placeholder"))
    if positions != sorted(positions):
        out.append(Violation(path, "structure/sections", "Target, Result and Analysis must come in that order"))
    tagged = sum("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    if tagged != 1:
        out.append(Violation(path, "structure/parameters", f"{tagged} cells are tagged `parameters`; exactly 1 must be"))
    if not is_executed(nb):
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        if dirty:
            out.append(Violation(path, "structure/outputs",
                                 f"cells {dirty} carry outputs or execution counts; strip them "
                                 "(e.g. `jupyter nbconvert --clear-output --inplace`)"))
    badges = BADGE.findall("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    if not badges:
        out.append(Violation(path, "structure/colab-badge", f"no Open-in-Colab badge; use {colab.badge(repo_path or path.name)}"))
    for repository, target in badges:
        expected = repo_path or path.name
        if repository != colab.REPOSITORY or (target != expected if repo_path else Path(target).name != path.name):
            out.append(Violation(path, "structure/colab-badge",
                                 f"the badge opens {repository}/{target}, not {colab.REPOSITORY}/{expected}"))
    for repository, branch in INSTALL.findall("\n".join(c.source for c in nb.cells if c.cell_type == "code")):
        if (repository, branch) != (colab.REPOSITORY, colab.BRANCH):
            out.append(Violation(path, "structure/colab-install",
                                 f"the set-up cell installs {repository}@{branch}, not {colab.REPOSITORY}@{colab.BRANCH}"))
    return out


def report_path(path: Path) -> Path | None:
    """The executed copy of a source notebook, in its report folder, if there is one."""
    folder = report_folder(path)
    return folder / path.name if folder is not None and (folder / path.name).exists() else None


def ran_cells(nb) -> list:
    """A notebook's cells without the one papermill injects after `parameters`."""
    return [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def check_report(path: Path, nb, report: Path) -> list[Violation]:
    """The report must be a run of this very code, and show this notebook's text."""
    executed = ran_cells(nbformat.read(report, as_version=4))
    report = Path(os.path.relpath(report))
    code = lambda cells: [c.source for c in cells if c.cell_type == "code"]  # noqa: E731
    text = lambda cells: [c.source for c in cells if c.cell_type == "markdown"]  # noqa: E731
    if code(executed) != code(nb.cells):
        at = next((i for i, (a, b) in enumerate(zip(code(executed), code(nb.cells))) if a != b),
                  min(len(code(executed)), len(code(nb.cells))))
        return [Violation(path, "report/stale-code", f"{report} ran other code (from code cell {at} on); "
                                                     f"run it again: python -m kit run {path}")]
    if text(executed) != text(nb.cells):
        return [Violation(path, "report/stale-text", f"{report} shows other Markdown than this notebook; "
                                                     f"refresh it: python -m kit run {path} --text-only")]
    return []


def check_budget(path: Path, nb, metrics: dict | None, result: str = "") -> list[Violation]:
    """The declared budget, the model's size, and each run held to the budget against it.

    A run that misses its budget is a violation unless the Result says so (a step
    of a progression may miss its target, honestly); a Result that calls a missed
    budget met, or a met one missed, is a violation either way.
    """
    budgets, problems = declared_budget(nb)
    out = [Violation(path, "budget/declared", p) for p in problems]
    if len(budgets) != 1:
        return out + [Violation(path, "budget/declared",
                                f"{len(budgets)} budgets declared; declare exactly one, e.g. "
                                "budget = kit.Budget(max_parameters=8000, max_epochs=15, target_test_acc=99.4, "
                                "consistent_epochs=3)")]
    budget = budgets[0]
    if not is_executed(nb):
        try:
            counted = count_model_parameters(nb)
        except Exception as e:
            out.append(Violation(path, "budget/parameters", f"the `model` cells do not build: {type(e).__name__}: {e}"))
            counted = None
        if counted is not None and (miss := budget.misses(parameters=counted)):
            out.append(Violation(path, "budget/parameters", f"the model has {miss['parameters']}"))
    if metrics is None:
        return out
    prefix = {"parameters": "recorded ", "epochs": "used ", "consistency": ""}
    for label, run, said in _held_runs(metrics, result):
        misses = budget.misses(
            parameters=run["parameters"], epochs=run["epochs"],
            # a smoke run is not held to the accuracy target, and its Result speaks of another run
            test_accs=None if metrics.get("quick") else [e["test_acc"] for e in run["history"]],
        )
        if metrics.get("quick"):
            said = None
        if misses and said != "missed":
            hint = "" if said == "met" else "; meet it, or say in the Result that the budget is missed"
            out += [Violation(path, f"budget/{part}", label + prefix[part] + message + hint)
                    for part, message in misses.items()]
        if said == "met" and misses:
            out.append(Violation(path, "claims/budget", f"{label}the Result says the budget is met; the run misses it"))
        if said == "missed" and not misses:
            out.append(Violation(path, "claims/budget", f"{label}the Result says the budget is missed; the run meets it"))
    return out


BUDGET_MISSED = re.compile(r"\bbudget\b[^\n]*?\bmiss(?:ed|es)?\b|\bmiss(?:ed|es)\b[^\n]*?\bbudget\b", re.I)
BUDGET_MET = re.compile(r"\bbudget\b[^\n]*?\bmet\b|\bmeets?\b[^\n]*?\bbudget\b", re.I)


def _said(text: str) -> str | None:
    """What a Result says of the budget: "missed", "met", or nothing."""
    if BUDGET_MISSED.search(text):
        return "missed"
    if BUDGET_MET.search(text):
        return "met"
    return None


def _held_runs(metrics: dict, result: str) -> list[tuple[str, dict, str | None]]:
    """(label, run, what the Result says of its budget) for every run held to the budget."""
    if "runs" not in metrics:
        return [("", metrics, _said(result))]
    held = []
    for r in metrics["runs"]:
        if r.get("budget"):
            line = next((line for line in result.splitlines() if _labels(line, r["name"])), "")
            held.append((f"{r['name']}: ", r, _said(line)))
    return held


def check_sanity(path: Path, metrics: dict) -> list[Violation]:
    out = []
    for e in metrics.get("history", []):
        losses = {k: e[k] for k in ("train_loss", "test_loss") if k in e}
        bad = {k: v for k, v in losses.items() if v is None or not math.isfinite(v)}
        if bad:
            out.append(Violation(path, "sanity/non-finite-loss", f"epoch {e['epoch']}: {bad}"))
            if e.get("test_acc") is not None:
                out.append(Violation(path, "sanity/accuracy-with-nan-loss",
                                     f"epoch {e['epoch']} reports {e['test_acc']}% test accuracy with a non-finite loss"))
        if e.get("test_acc") == 100.0:
            out.append(Violation(path, "sanity/perfect-accuracy",
                                 f"epoch {e['epoch']} reports exactly 100% test accuracy: almost surely a bug"))
    return out


def check_notebook(path: Path, repo_root: Path | None = None) -> list[Violation]:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        return [Violation(path, "structure/readable", f"not a readable notebook: {e}")]
    repo_path = None  # a source notebook's own path in the repository; executed copies are matched by name
    if repo_root is not None and not is_executed(nb):
        try:
            repo_path = path.resolve().relative_to(repo_root.resolve()).as_posix()
        except ValueError:
            pass
    mp = metrics_path(path)
    metrics = json.loads(mp.read_text()) if mp else None
    out = check_structure(path, nb, repo_path)
    if not is_executed(nb) and (report := report_path(path)):
        out += check_report(path, nb, report)
    result = next((c for c in nb.cells if (_heading(c) or "").lower() == "result"), None)
    out += check_budget(path, nb, metrics, _body(result) if result is not None else "")
    # A smoke run's metrics cannot confirm a Result, which speaks of the reference run.
    if result is not None and _body(result) and not PLACEHOLDER.search(_body(result)) \
            and not (metrics or {}).get("quick"):
        out += check_claims(path, _body(result), metrics)
    if metrics:
        out += check_sanity(path, metrics)
    return out


def check_assignment(folder: Path, notebooks: list[Path]) -> list[Violation]:
    spec = json.loads((folder / "assignment.json").read_text())
    out = []
    if "steps" in spec and len(notebooks) != spec["steps"]:
        out.append(Violation(folder, "assignment/steps",
                             f"{len(notebooks)} step notebooks; the assignment asks for exactly {spec['steps']}"))
    if "budget" in spec and notebooks:
        out += _assignment_budget(notebooks[-1], spec["budget"])
    if spec.get("rf_table"):
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            if not any(c.cell_type == "code" and "receptive_field(" in c.source for c in nb.cells):
                out.append(Violation(path, "assignment/rf-table",
                                     "no receptive-field table: add a cell with kit.rf.receptive_field(model, input_size)"))
    return out


def _assignment_budget(last: Path, rules: dict) -> list[Violation]:
    """The last step must declare a budget at least as strict as the assignment's (its runs are then held to it)."""
    from kit.record import Budget

    wanted = Budget(**rules)
    budgets, _ = declared_budget(nbformat.read(last, as_version=4))
    if len(budgets) != 1:
        return []  # budget/declared reports it
    b = budgets[0]
    looser = [f"{name} {have} (the assignment's: {want})" for name, have, want, ok in (
        ("max_parameters", b.max_parameters, wanted.max_parameters, b.max_parameters <= wanted.max_parameters),
        ("max_epochs", b.max_epochs, wanted.max_epochs, b.max_epochs <= wanted.max_epochs),
        ("target_test_acc", b.target_test_acc, wanted.target_test_acc, b.target_test_acc >= wanted.target_test_acc),
        ("consistent_epochs", b.consistent_epochs, wanted.consistent_epochs, b.consistent_epochs >= wanted.consistent_epochs),
    ) if not ok]
    out = [Violation(last, "assignment/budget", "the last step's budget is looser than the assignment's: "
                                                + "; ".join(looser))] if looser else []
    mp = metrics_path(last)
    metrics = json.loads(mp.read_text()) if mp else None
    if metrics is None or metrics.get("quick"):
        return out
    for label, run, _ in _held_runs(metrics, ""):  # saying so does not excuse the assignment's own budget
        for message in wanted.misses(parameters=run["parameters"], epochs=run["epochs"],
                                     test_accs=[e["test_acc"] for e in run["history"]]).values():
            out.append(Violation(last, "assignment/budget", f"{label}the last step misses the assignment's budget: "
                                                            f"{message}"))
    return out


def _repo_root(path: Path) -> Path | None:
    for p in [path.resolve(), *path.resolve().parents]:
        if (p / "pyproject.toml").exists() and (p / "kit").is_dir():
            return p
    return None


def check(paths: list[str | Path]) -> list[Violation]:
    """Check notebooks and folders of notebooks (a folder with assignment.json is a submission)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            notebooks = sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
            if (p / "assignment.json").exists():
                out += check_assignment(p, notebooks)
            for q in notebooks:
                out += check_notebook(q, _repo_root(q))
            for sub in sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))
                              and not d.name.endswith("_files")):
                if sub.name == TEMPLATE:
                    print(f"{sub}: skipped: a template fails until it is filled; name it to check it", file=sys.stderr)
                    continue
                out += check([sub])
        elif p.suffix == ".ipynb" and p.exists():
            out += check_notebook(p, _repo_root(p))
        else:
            out.append(Violation(p, "structure/readable", "not a notebook or a folder"))
    return out
