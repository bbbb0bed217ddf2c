"""`python -m kit check PATH ...`: keep notebooks honest.

Each rule reads a notebook (source or executed by `python -m kit run`), its
record (NAME.metrics.json, see kit.record) and, where there is one, the
executed notebook the record came from; each violation is one line,
`PATH: RULE: message`. The rules:

structure/sections     Target, Result and Analysis, in that order, filled in (headings such as `## Result`,
                       `**Result**`, `## Results` or `## Result (reference run)` all count)
structure/parameters   exactly one cell tagged `parameters`
structure/outputs      a source notebook carries no outputs and no execution counts
structure/colab-badge, structure/colab-install   the Colab badge opens this notebook; the set-up installs the kit
budget/declared        exactly one `budget = kit.Budget(...)` with literal arguments, the one the record holds its
                       runs to (at least one run)
budget/parameters, budget/epochs, budget/consistency
                       every run held to the budget meets it (every parameter counts, frozen ones too; every
                       Trainer fitted on a model counts toward its epochs), unless the Result says it is missed;
                       the record counts the model the `model` cells build
budget/unreported      a Trainer was fitted but not passed to result()
claims/*               the Result's claims (parameters, best accuracies and their epochs, the last K test
                       accuracies, the budget's verdict as a fixed phrase) agree with the record; every other
                       number of the Result is one the record holds or derives (claims/untied); an Analysis states
                       only figures of this record or of a report its paragraph links to (claims/analysis);
                       a smoke run's record confirms nothing (claims/unverified); a run named for a seed was drawn
                       with it (claims/seed)
evidence/*             the record agrees with the executed notebook: its printed epoch lines (no printed run left
                       out), the line kit.setup printed, and the parameters papermill injected (kit.evidence)
report/*               a source notebook's report is a readable notebook, ran exactly its code, shows its Markdown,
                       was made by the kit's current numbers (kit.record.NUMBERS), and names its notebook without a
                       path of the machine that ran it (report/local-path)
record/unreadable      the record is not a record of this kit's schema
sanity/*               for every run: no NaN or inf loss, no accuracy beside one, no accuracy of 100% or more,
                       no accuracy off the grid of the test set's size; trained on a training loader, tested on a
                       test loader, in a full run on the whole test split (sanity/data); the notebook changed
                       none of the kit's functions, methods or settings (sanity/kit-changed), and its code
                       assigns to nothing of the kit (sanity/kit-assigned: read, whether it ran or not)
assignment/*           a folder with assignment.json is judged by the instructor's rules that ship with the kit
                       (kit/assignments/NAME.json): exactly its number of steps (sub-folders count), an RF table
                       in each (shown, where the notebook ran), and a last step whose every run meets a budget at
                       least as strict

A folder named `template` is skipped when a folder above it is checked (a template fails until it is
filled); name it to check it. The checker runs no notebook code in its own process: `model` cells are
built in a subprocess, with a time limit, in an empty working folder.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from kit import colab
from kit.files import read_notebook, report_folder

SECTIONS = ("Target", "Result", "Analysis")
TEMPLATE = "template"  # a folder of student templates: checked only when named, since it fails until filled
PLACEHOLDER = re.compile(r"\bTODO\b|\bTBD\b|\bFILL ME\b|<[^>]*fill[^>]*>|\.\.\.\s*$|^\s*-\s*$", re.I | re.M)
INSTALL = re.compile(r"git\+https://github\.com/([^/\s@\"']+/[^/\s@\"']+?)(?:\.git)?@([^\s\"'#]+)")
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+/[^/\s)]+)/blob/[^/\s)]+/([^\s)]+\.ipynb)")
ASSIGNMENTS = Path(__file__).resolve().parent / "assignments"  # the instructor's rules, shipped with the kit
MODEL_TIMEOUT = 120  # seconds the `model` cells of all notebooks checked at once may take to build


@dataclass(frozen=True)
class Violation:
    path: Path
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.message}"


# --- reading a notebook ---------------------------------------------------------------------

def _uncommented(cell) -> str:
    """A Markdown cell's text without its HTML comments, which a reader never sees."""
    return re.sub(r"<!--.*?-->", "", cell.source, flags=re.S).strip()


def _title(cell) -> tuple[str, str] | None:
    """A Markdown cell's heading: (its title, the words the heading adds to it). '## Result (reference run)',
    '**Result**', '### 3. Result: seed 1' and '## <a id="result"></a>Result — seed 1' are all titled 'Result'."""
    first = _uncommented(cell).splitlines() if cell.cell_type == "markdown" else []
    if not first or not first[0].startswith(("#", "**", "__")):
        return None
    m = re.match(r"(?:#+\s*|\*\*|__)\s*(.+?)\s*(?:\*\*|__)?\s*:?\s*(?:\*\*|__)?\s*$", first[0])
    if not m:
        return None
    text = re.sub(r"^(?:\d+\.)*\d+\.?\s+", "", re.sub(r"<[^>]*>", "", m.group(1)).strip())  # '3. Result'
    title = re.sub(r"\s*\(.*\)\s*$", "", re.split(r"\s*(?::|\s[—–-]\s)", text)[0]).strip(" *_:")
    return title, text[len(title):].strip(" *_:—–-") if text.startswith(title) else ""


def _heading(cell) -> str | None:
    """A Markdown cell's title, a section's name where it is one ('## Results:' -> 'Result')."""
    title = (_title(cell) or (None,))[0]
    if title is None:
        return None
    for section in SECTIONS:
        if title.lower() in (section.lower(), section.lower() + "s", section.lower() + "es"):
            return section
    return title


def _body(cell) -> str:
    return "\n".join(_uncommented(cell).splitlines()[1:]).strip()


def section(nb, name: str):
    return next((c for c in nb.cells if _heading(c) == name), None)


def section_text(nb, name: str) -> str | None:
    """What a section says: its cell's body and the words its heading adds ('## Result (99.9% at best)'). The
    Analysis also holds every other Markdown cell below the Result (a note between the two, a cell after the
    Analysis): a figure written there is judged as the Analysis's are, not left out."""
    at = next((i for i, c in enumerate(nb.cells) if _heading(c) == name), None)
    if at is None:
        return None
    parts = [_title(nb.cells[at])[1], _body(nb.cells[at])]
    result = next((i for i, c in enumerate(nb.cells) if _heading(c) == "Result"), None)
    if name == "Analysis" and result is not None:
        parts += [_uncommented(c) for i, c in enumerate(nb.cells)
                  if i > result and i != at and c.cell_type == "markdown" and _heading(c) not in SECTIONS]
    return "\n\n".join(p for p in parts if p)


def is_executed(nb) -> bool:
    return "papermill" in nb.metadata


def metrics_path(path: Path) -> Path | None:
    """The record of this notebook's run: beside it, else in its report folder (see kit.files.report_folder)."""
    beside = path.with_name(f"{path.stem}.metrics.json")
    if beside.exists():
        return beside
    folder = report_folder(path)
    if folder is not None and (folder / beside.name).exists():
        return folder / beside.name
    return None


def report_path(path: Path) -> Path | None:
    """The executed copy of a source notebook, in its report folder, if there is one."""
    folder = report_folder(path)
    return folder / path.name if folder is not None and (folder / path.name).exists() else None


def ran_cells(nb) -> list:
    """A notebook's cells without the one papermill injects after `parameters`."""
    return [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def _python_only(source: str) -> str:
    """Cell source without IPython magics and shell escapes."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


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


# --- model cells, built in a subprocess ----------------------------------------------------------

BUILD = r"""
import json, os, sys, tempfile
os.chdir(tempfile.mkdtemp(prefix="kit-model-"))
import torch
from torch import nn
import kit
out = {}
for key, source in json.loads(sys.stdin.read()).items():
    namespace = {"torch": torch, "nn": nn, "F": torch.nn.functional, "kit": kit}
    try:
        exec(compile(source, "<model cell>", "exec"), namespace)
        model = namespace.get("model")
        if not isinstance(model, nn.Module):
            raise ValueError("the cells tagged `model` must leave an nn.Module named `model`")
        out[key] = {"parameters": sum(p.numel() for p in model.parameters())}
    except Exception as e:
        out[key] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""


def model_sources(nb) -> str | None:
    cells = [c for c in nb.cells if c.cell_type == "code" and "model" in c.metadata.get("tags", [])]
    return "\n".join(_python_only(c.source) for c in cells) if cells else None


def build_models(sources: dict[str, str]) -> dict[str, dict]:
    """Build each notebook's `model` cells in one subprocess (no notebook code runs in the checker's own)."""
    if not sources:
        return {}
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", BUILD], input=json.dumps(sources), capture_output=True, text=True,
                              timeout=MODEL_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return {k: {"error": f"building the models took over {MODEL_TIMEOUT} s; stopped"} for k in sources}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {k: {"error": f"the model-building process failed: {tail[0]}"} for k in sources}


def _sources(notebooks: list[Path]) -> dict[str, str]:
    """The `model` cells of the source notebooks among these (an executed copy's record says what it trained)."""
    out = {}
    for path in notebooks:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:
            continue  # structure/readable reports it
        if not is_executed(nb) and (source := model_sources(nb)):
            out[str(path)] = source
    return out


def count_model_parameters(nb) -> int | None:
    """Build the model from the cells tagged `model` (in a subprocess, no training) and count its parameters."""
    source = model_sources(nb)
    if source is None:
        return None
    built = build_models({"model": source})["model"]
    if "error" in built:
        raise ValueError(built["error"])
    return built["parameters"]


# --- the rules -----------------------------------------------------------------------------------

def check_structure(path: Path, nb, repo_path: str | None) -> list[Violation]:
    out = []
    positions = []
    for name in SECTIONS:
        hits = [i for i, c in enumerate(nb.cells) if _heading(c) == name]
        if not hits:
            out.append(Violation(path, "structure/sections", f"no Markdown cell titled '{name}'"))
            continue
        positions.append(hits[0])
        body = _body(nb.cells[hits[0]])
        if not body:
            out.append(Violation(path, "structure/sections", f"the '{name}' cell is empty"))
        elif PLACEHOLDER.search(body):
            out.append(Violation(path, "structure/sections", f"the '{name}' cell is still a template placeholder"))
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
        out.append(Violation(path, "structure/colab-badge",
                             f"no Open-in-Colab badge; use {colab.badge(repo_path or path.name)}"))
    copy = _student_copy(path)
    own = repo_path is not None and not copy
    for repository, target in badges:
        if own and (repository, target) != (colab.REPOSITORY, repo_path):
            out.append(Violation(path, "structure/colab-badge",
                                 f"the badge opens {repository}/{target}, not {colab.REPOSITORY}/{repo_path}"))
        elif not own and Path(target).name != path.name:  # a copy: its own repository, or the template it came from
            out.append(Violation(path, "structure/colab-badge",
                                 f"the badge opens {target}, another notebook than {path.name}"))
        elif copy and repository == colab.REPOSITORY and Path(target).parent.name == "solution":
            out.append(Violation(path, "structure/colab-badge",
                                 f"the badge opens the instructor's solution ({target}), not this copy"))
    for repository, branch in INSTALL.findall("\n".join(c.source for c in nb.cells if c.cell_type == "code")):
        if (repository, branch) != (colab.REPOSITORY, colab.BRANCH):
            out.append(Violation(path, "structure/colab-install",
                                 f"the set-up cell installs {repository}@{branch}, not {colab.REPOSITORY}@{colab.BRANCH}"))
    return out


def _student_copy(path: Path) -> bool:
    """A notebook in a student's copy of an assignment (a folder with assignment.json that is not the
    instructor's solution or template): its badges may open its own repository or the template it came from."""
    folder = path.resolve().parent
    return (folder / "assignment.json").exists() and folder.name not in ("solution", TEMPLATE)


def check_report(path: Path, nb, report: Path, ran) -> list[Violation]:
    """The report must be a run of this very code, and show this notebook's text."""
    executed = ran_cells(ran)
    shown = Path(os.path.relpath(report))
    named = ran.metadata.get("papermill", {}).get("input_path")
    relative = Path(os.path.relpath(path.resolve(), report.resolve().parent)).as_posix()
    if named is not None and named not in (path.name, relative):
        return [Violation(path, "report/local-path", f"{shown} names the notebook it ran as {named!r}, a path of the "
                                                     f"machine that made it; a report names {relative!r} or {path.name!r}")]
    code = lambda cells: [c.source for c in cells if c.cell_type == "code"]  # noqa: E731
    text = lambda cells: [c.source for c in cells if c.cell_type == "markdown"]  # noqa: E731
    if code(executed) != code(nb.cells):
        at = next((i for i, (a, b) in enumerate(zip(code(executed), code(nb.cells))) if a != b),
                  min(len(code(executed)), len(code(nb.cells))))
        return [Violation(path, "report/stale-code", f"{shown} ran other code (from code cell {at} on); "
                                                     f"run it again: python -m kit run {path}")]
    if text(executed) != text(nb.cells):
        return [Violation(path, "report/stale-text", f"{shown} shows other Markdown than this notebook; "
                                                     f"refresh it: python -m kit run {path} --text-only")]
    return []


def epochs_used(run, record) -> int:
    """A run's epochs and those of every unreported Trainer fitted on its model or a part of it."""
    ids = set(run.settings.get("model_ids", []))
    fitted = run.epochs + sum(u.epochs for u in record.runs if not u.reported and u.settings.get("model_id") in ids)
    return max(fitted, run.settings.get("model_epochs", 0))  # the epochs its modules were trained, however


def check_budget(path: Path, nb, record, result: str, counted: int | None, model_error: str | None,
                 assignment_budget=None) -> list[Violation]:
    """The declared budget, the model's size, and each run held to the budget against it.

    A run that misses its budget passes only where the Result's verdict says it is missed (a step of a
    progression may miss its target, openly); the last step of an assignment is held to the assignment's
    budget whatever it says.
    """
    from kit.claims import verdicts

    budget, out = budget_rules(path, nb, record, counted, model_error)
    if budget is None or record is None:
        return out
    said = verdicts(result, record) if not record.quick else {}
    prefix = {"parameters": "recorded ", "epochs": "used ", "consistency": ""}
    held = [r for r in record.reported if r.budget or assignment_budget]
    for run in held:
        label = f"{run.name}: " if run.name else ""
        judge = assignment_budget or budget
        misses = judge.misses(parameters=run.parameters, epochs=epochs_used(run, record),
                              test_accs=None if record.quick else run.history.column("test_acc"))
        excused = said.get(run.name) == "missed" and not assignment_budget
        if misses and not excused:
            hint = "" if assignment_budget else "; meet it, or say in the Result 'Budget: missed (...)'"
            out += [Violation(path, f"budget/{part}", label + prefix[part] + message + hint)
                    for part, message in misses.items()]
    return out


def budget_rules(path: Path, nb, record, counted: int | None, model_error: str | None):
    """(the declared budget or None, violations): one budget with literal arguments, a model its `model` cells
    build within it, a record that holds its runs to it and counts that model, and no Trainer left unjudged."""
    budgets, problems = declared_budget(nb)
    out = [Violation(path, "budget/declared", p) for p in problems]
    if len(budgets) != 1:
        return None, out + [Violation(path, "budget/declared",
                                      f"{len(budgets)} budgets declared; declare exactly one, e.g. "
                                      "budget = kit.Budget(max_parameters=8000, max_epochs=15, target_test_acc=99.4, "
                                      "consistent_epochs=3)")]
    budget = budgets[0]
    if model_error:
        out.append(Violation(path, "budget/parameters", f"the `model` cells do not build: {model_error}"))
    if counted is not None and (miss := budget.misses(parameters=counted)):
        out.append(Violation(path, "budget/parameters", f"the model has {miss['parameters']}"))
    if record is None:
        return budget, out
    out += _held_to(path, record, budget, counted)
    for run in record.runs:
        if not run.reported:
            related = any(run.settings.get("model_id") in r.settings.get("model_ids", []) for r in record.reported)
            if not related:
                out.append(Violation(path, "budget/unreported", f"{run.name}: a Trainer fitted {run.epochs} epoch(s) "
                                                                "that the record's runs do not include; pass it to "
                                                                "result() so its epochs are judged"))
    return budget, out


def _held_to(path: Path, record, budget, counted: int | None) -> list[Violation]:
    """The record holds its runs to the budget the notebook declares, and counts the model its cells build."""
    out = [Violation(path, "budget/declared", f"{r.name or 'the run'} is held to {r.budget}, but the notebook "
                                              f"declares {budget}; run it again")
           for r in record.reported if r.budget is not None and r.budget != budget]
    held = [r for r in record.reported if r.budget is not None]
    if not held:
        out.append(Violation(path, "budget/declared", "the notebook declares a budget, but the record holds no run to "
                                                      "it: pass it to result() (setup.result(trainer, budget))"))
    one_model = len({r.settings.get("architecture") for r in held}) == 1
    if counted is not None and one_model and (recorded := held[0].parameters) != counted:
        out.append(Violation(path, "budget/parameters", f"the record says the model has {recorded:,} parameters; "
                                                        f"the `model` cells build one of {counted:,}"))
    return out


def check_kit_assigned(path: Path, nb) -> list[Violation]:
    """Code that assigns to the kit, read from the notebook whether it ran or not (kit.integrity.assigned)."""
    from kit.integrity import assigned

    code = [_python_only(c.source) for c in nb.cells if c.cell_type == "code"]
    return [Violation(path, "sanity/kit-assigned", f"code cell {index + 1} assigns to the kit ({target}): a run "
                      "would report what the kit did not compute; change a model or a callback of the notebook's "
                      "own (a subclass) instead") for index, target in assigned(code)]


def check_sanity(path: Path, record) -> list[Violation]:
    from kit.data import TEST_IMAGES

    out = []
    if record.kit_changed:
        out.append(Violation(path, "sanity/kit-changed", f"the notebook changed the kit while it trained or before its "
                             f"result ({', '.join(record.kit_changed)}), so the kit did not compute what it reports; "
                             "change a model or a callback of the notebook's own (a subclass) instead, and run it again"))
    for run in record.runs:
        label = f"{run.name}: " if run.name else ""
        if any(made is False for made, _ in run.settings.get("trained_on", [])):
            out.append(Violation(path, "sanity/data", f"{label}trained on a loader made for testing (the test set?)"))
        if any(made is True for made, _ in run.settings.get("tested_on", [])):
            out.append(Violation(path, "sanity/data", f"{label}tested on a loader made for training"))
        named = re.search(r"\bseed\s+(\d+)\b", run.name)
        if named and run.seed is not None and int(named.group(1)) != run.seed:
            out.append(Violation(path, "claims/seed", f"{label}the run is named for seed {named.group(1)}, but its "
                                                      f"data were drawn with seed {run.seed}"))
        full = TEST_IMAGES.get(run.data or "")
        tested = {n for _, n in run.settings.get("tested_on", [])} or {run.test_images}
        if not record.quick and full and tested != {full}:
            out.append(Violation(path, "sanity/data", f"{label}tested on {', '.join(f'{n:,}' for n in sorted(tested))} "
                                                      f"images; a full run tests on the whole {run.data} test split "
                                                      f"({full:,})"))
        for e in run.history.epochs:
            losses = {k: getattr(e, k) for k in ("train_loss", "test_loss")}
            bad = {k: v for k, v in losses.items() if v is None or not math.isfinite(v)}
            if bad:
                out.append(Violation(path, "sanity/non-finite-loss", f"{label}epoch {e.epoch}: {bad}"))
                out.append(Violation(path, "sanity/accuracy-with-nan-loss",
                                     f"{label}epoch {e.epoch} reports {e.test_acc}% test accuracy with a non-finite loss"))
            for key, n in (("test_acc", run.test_images), ("train_acc", run.train_images)):
                acc = getattr(e, key)
                if key == "test_acc" and acc >= 100.0:
                    out.append(Violation(path, "sanity/perfect-accuracy",
                                         f"{label}epoch {e.epoch} reports {acc}% test accuracy: almost surely a bug"))
                if n and abs(acc * n / 100 - round(acc * n / 100)) > 1e-6 * n:
                    out.append(Violation(path, "sanity/off-grid",
                                         f"{label}epoch {e.epoch}: {key.replace('_', ' ')} {acc}% is not a whole "
                                         f"number of the {n:,} images"))
    return out


def numbers_facts(data):
    """Facts of every number in a JSON document."""
    from kit.claims import Facts

    f = Facts()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            f.add(item, percent=True)  # a records file does not say which of its numbers are accuracies
    return f


def _others(path: Path):
    """Facts of the notebooks a paragraph links to, found through their records."""
    from kit.claims import facts_of
    from kit.record import Record, RecordError

    def facts(target: str):
        linked = (path.parent / target.split("#")[0]).resolve()
        if linked.suffix == ".json":  # records of runs kept as evidence (a search's, say): every number in them
            try:
                return numbers_facts(json.loads(linked.read_text()))
            except (OSError, ValueError):
                return None
        mp = metrics_path(linked) if linked.suffix == ".ipynb" else None
        try:
            return facts_of(Record.load(mp)) if mp else None
        except (RecordError, OSError):
            return None
    return facts


def check_notebook(path: Path, repo_root: Path | None = None, built: dict | None = None,
                   assignment_budget=None) -> list[Violation]:
    from kit.claims import check_analysis, check_result
    from kit.evidence import check_epoch_lines, check_parameters, check_setup
    from kit.record import NUMBERS, Record, RecordError

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
    out = check_structure(path, nb, repo_path) + check_kit_assigned(path, nb)
    record, mp = None, metrics_path(path)
    if mp is not None:
        try:
            record = Record.load(mp)
        except (RecordError, OSError) as e:
            out.append(Violation(path, "record/unreadable", str(e)))
    report = nb if is_executed(nb) else None
    if not is_executed(nb) and (rp := report_path(path)):
        report = _read(rp)
        if report is None:
            out.append(Violation(path, "report/unreadable", f"{rp} is not a readable notebook; run it again: "
                                                            f"python -m kit run {path}"))
        else:
            out += check_report(path, nb, rp, report)
    result, analysis = section_text(nb, "Result") or "", section_text(nb, "Analysis")
    if built is None and not is_executed(nb) and (source := model_sources(nb)):
        built = build_models({str(path): source})
    one = (built or {}).get(str(path), {})
    out += check_budget(path, nb, record, result, one.get("parameters"), one.get("error"), assignment_budget)
    filled = bool(result) and not PLACEHOLDER.search(result)
    if filled and record is None:
        out.append(Violation(path, "claims/unverified", "no record confirms the Result; run `python -m kit run` on it"))
    elif filled and record.quick:
        out.append(Violation(path, "claims/unverified", "the record is a smoke run (quick mode): it confirms no "
                                                        "claim; make a full run with `python -m kit run`"))
    elif filled:
        out += [Violation(path, rule, msg) for rule, msg in check_result(result, record)]
        if analysis is not None and not PLACEHOLDER.search(analysis):
            out += [Violation(path, rule, msg) for rule, msg in check_analysis(analysis, record, _others(path))]
    if record is not None:
        if report is not None:
            evidence = check_epoch_lines(report, record) + check_setup(report, record) + check_parameters(report, record)
            out += [Violation(path, rule, msg) for rule, msg in evidence]
        elif not record.quick:
            out.append(Violation(path, "evidence/missing", "no executed notebook beside the record: the record "
                                                           "cannot be tied to a run"))
        if record.environment is not None and record.environment.numbers != NUMBERS:
            out.append(Violation(path, "report/stale-kit", f"the run was made by the kit's numbers version "
                                                           f"{record.environment.numbers}; the kit now computes "
                                                           f"version {NUMBERS}: run it again"))
        out += check_sanity(path, record)
    return out


# --- assignments ----------------------------------------------------------------------------------

def instructor_rules(folder: Path) -> tuple[dict | None, list[Violation]]:
    """The rules of the assignment a folder holds, from the kit's own copy; and how the folder's copy differs."""
    local_path = folder / "assignment.json"
    try:
        local = json.loads(local_path.read_text())
    except (ValueError, OSError) as e:  # not JSON, not text, or not a file at all
        return None, [Violation(local_path, "assignment/rules", f"not a readable JSON file: {e}")]
    name = local.get("assignment") if isinstance(local, dict) else None
    known = sorted(p.stem for p in ASSIGNMENTS.glob("*.json"))
    if name not in known:
        return None, [Violation(local_path, "assignment/rules", f"names the assignment {name!r}; the kit knows "
                                                                f"{', '.join(known)} (give it as \"assignment\")")]
    rules = json.loads((ASSIGNMENTS / f"{name}.json").read_text())
    out = []
    if local != rules:
        changed = sorted(k for k in set(local) | set(rules) if local.get(k) != rules.get(k))
        out.append(Violation(local_path, "assignment/rules-edited",
                             f"differs from the instructor's rules in {', '.join(changed)}; the instructor's "
                             f"(kit/assignments/{name}.json) are the ones applied"))
    return rules, out


def step_notebooks(folder: Path) -> list[Path]:
    """A submission's step notebooks, in sub-folders too (not templates, reports' figures or hidden folders)."""
    return sorted((q for q in folder.rglob("*.ipynb")
                   if not any(part.startswith((".", "_")) or part.endswith("_files") or part == TEMPLATE
                              for part in q.relative_to(folder).parts[:-1]) and not q.name.startswith(".")),
                  key=lambda q: (q.name, str(q)))


def check_assignment(folder: Path) -> list[Violation]:
    from kit.evidence import rf_table_problem
    from kit.record import Budget

    rules, out = instructor_rules(folder)
    if rules is None:
        return out
    notebooks = step_notebooks(folder)
    if len(notebooks) != rules["steps"]:
        out.append(Violation(folder, "assignment/steps",
                             f"{len(notebooks)} step notebooks; the assignment asks for exactly {rules['steps']}"))
    if rules.get("rf_table"):
        for path in notebooks:
            if (nb := _read(path)) is None:
                continue  # check_notebook names it (structure/readable)
            ran = nb if is_executed(nb) else _read(rp) if (rp := report_path(path)) else None
            if problem := rf_table_problem(nb, ran):
                out.append(Violation(path, "assignment/rf-table", problem))
    wanted = Budget.from_dict(rules["budget"], "the assignment's budget")
    built = build_models(_sources(notebooks))
    for path in notebooks:
        last = path == notebooks[-1] if notebooks else False
        out += check_notebook(path, _repo_root(path), built, wanted if last else None)
    if notebooks:
        out += _strict_enough(notebooks[-1], wanted)
    return out


def _strict_enough(last: Path, wanted) -> list[Violation]:
    """The last step must declare a budget at least as strict as the assignment's."""
    nb = _read(last)
    budgets, _ = declared_budget(nb) if nb is not None else ([], [])
    if len(budgets) != 1:
        return []  # structure/readable or budget/declared reports it
    b = budgets[0]
    looser = [f"{name} {have} (the assignment's: {want})" for name, have, want, ok in (
        ("max_parameters", b.max_parameters, wanted.max_parameters, b.max_parameters <= wanted.max_parameters),
        ("max_epochs", b.max_epochs, wanted.max_epochs, b.max_epochs <= wanted.max_epochs),
        ("target_test_acc", b.target_test_acc, wanted.target_test_acc, b.target_test_acc >= wanted.target_test_acc),
        ("consistent_epochs", b.consistent_epochs, wanted.consistent_epochs,
         b.consistent_epochs >= wanted.consistent_epochs),
    ) if not ok]
    return [Violation(last, "assignment/budget", "the last step's budget is looser than the assignment's: "
                                                 + "; ".join(looser))] if looser else []


def _read(path: Path):
    """A notebook, or None where it is not one (check_notebook says so, as structure/readable)."""
    try:
        return read_notebook(path)
    except (ValueError, OSError):
        return None


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
            if (p / "assignment.json").exists():
                out += check_assignment(p)
                continue
            notebooks = sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
            built = build_models(_sources(notebooks))
            for q in notebooks:
                out += check_notebook(q, _repo_root(q), built)
            subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))
                          and not d.name.endswith("_files"))
            for sub in subs:
                if sub.name == TEMPLATE:
                    print(f"{sub}: skipped: a template fails until it is filled; name it to check it", file=sys.stderr)
                    continue
                out += check([sub])
            if not notebooks and not subs:
                out.append(Violation(p, "structure/readable", "no notebooks in this folder"))
        elif p.suffix == ".ipynb" and p.is_file():
            out += check_notebook(p, _repo_root(p))
        else:
            out.append(Violation(p, "structure/readable", "not a notebook (.ipynb) or a folder of notebooks"))
    return out

