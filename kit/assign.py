"""`python -m kit assign SOLUTION_DIR`: the student's notebooks, generated from the instructor's.

One source per assignment, as Neuromatch and nbgrader keep it: the solution
notebooks mark what a student writes, in code cells, between

    # BEGIN SOLUTION (what the student is asked to write)
    ...
    # END SOLUTION

and the student's copy replaces each marked block by `raise NotImplementedError(...)`
with that request, at the block's indentation; Markdown between
`<!-- BEGIN SOLUTION -->` and `<!-- END SOLUTION -->` is left out. Target, Result and Analysis become
placeholders, outputs are stripped, the budget and everything unmarked stay, and
each Open-in-Colab badge opens the generated notebook. The rules (assignment.json)
are the instructor's copy that ships with the kit. `--check` writes nothing and
fails where the committed student folder differs from what it would generate.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

from kit import colab
from kit.check import ASSIGNMENTS, BADGE, _heading, _repo_root
from kit.files import read_notebook, write_text

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\s*(?:\((?P<ask>.*)\))?\s*$")
MARKDOWN_SOLUTION = re.compile(r"\s*<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->", re.S)
END = re.compile(r"^[ \t]*#\s*END SOLUTION\s*$")
PLACEHOLDERS = {
    "Target": "TODO: what this step sets out to do, and the budget it holds itself to.",
    "Result": "TODO: paste what `setup.result(...)` printed when the notebook ran.",
    "Analysis": "TODO: what the run shows (curves, mistakes, the budget), and what the next step changes.",
}


class AssignError(ValueError):
    """A solution notebook whose markers do not pair up."""


def stub(source: str, where: str) -> str:
    """A code cell's source with each marked block replaced by a NotImplementedError that asks for it."""
    out, inside, ask, indent = [], False, "", ""
    for n, line in enumerate(source.splitlines(), 1):
        if m := BEGIN.match(line):
            if inside:
                raise AssignError(f"{where}, line {n}: BEGIN SOLUTION inside another; close the first with END SOLUTION")
            inside, indent, ask = True, m.group("indent"), (m.group("ask") or "your code here").strip()
            out.append(f"{indent}# TODO: {ask}")
            out.append(f"{indent}raise NotImplementedError({ask!r})")
        elif END.match(line):
            if not inside:
                raise AssignError(f"{where}, line {n}: END SOLUTION without its BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise AssignError(f"{where}: BEGIN SOLUTION is never closed with END SOLUTION")
    return "\n".join(out)


def _in_repo(path: Path, root: Path | None) -> str | None:
    """`path` as the repository names it, or None outside it (a folder elsewhere cannot be opened on Colab)."""
    try:
        return path.resolve().relative_to(root).as_posix() if root else None
    except ValueError:
        return None


def student_notebook(solution: Path, target: Path, root: Path | None) -> nbformat.NotebookNode:
    """The student's version of one solution notebook, as it will live at `target`."""
    nb = read_notebook(solution)
    here = _in_repo(target, root) or _in_repo(solution.parent.parent / "template" / target.name, root) or target.name
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = stub(cell.source, f"{solution.name}, cell {i}")
            cell.outputs, cell.execution_count = [], None
        elif (title := _heading(cell)) in PLACEHOLDERS:
            cell.source = f"{cell.source.strip().splitlines()[0]}\n{PLACEHOLDERS[title]}"
        else:  # the instructor's own words, between <!-- BEGIN SOLUTION --> and <!-- END SOLUTION -->, are left out
            cell.source = BADGE.sub(lambda m: colab.url(here), MARKDOWN_SOLUTION.sub("", cell.source))
    nb.metadata.pop("papermill", None)
    return nb


def student_folder(solution_dir: Path, out: Path | None = None) -> dict[Path, str]:
    """Every file of the student's folder (path -> text), generated from the solution folder."""
    solution_dir = Path(solution_dir)
    if not solution_dir.is_dir():
        raise FileNotFoundError(f"{solution_dir}: no such folder; give the folder of an assignment's solution")
    if not (solution_dir / "assignment.json").exists():
        raise FileNotFoundError(f"{solution_dir}: no assignment.json; give the folder of an assignment's solution")
    try:
        rules = json.loads((solution_dir / "assignment.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{solution_dir / 'assignment.json'}: not JSON ({e})") from None
    name = rules.get("assignment") if isinstance(rules, dict) else None
    if not (ASSIGNMENTS / f"{name}.json").exists():
        raise ValueError(f"{solution_dir / 'assignment.json'} names the assignment {name!r}, which the kit does not "
                         f"ship (kit/assignments/); known: {', '.join(p.stem for p in ASSIGNMENTS.glob('*.json'))}")
    out = Path(out) if out else solution_dir.parent / "template"
    root = _repo_root(solution_dir)
    notebooks = sorted(solution_dir.glob("*.ipynb"))
    if not any(BEGIN.match(line) for nb_path in notebooks for c in read_notebook(nb_path).cells
               if c.cell_type == "code" for line in c.source.splitlines()):
        raise AssignError(f"{solution_dir}: no notebook marks what the student writes (`# BEGIN SOLUTION` ... "
                          f"`# END SOLUTION` in a code cell); give the instructor's solution folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; --out names the student's folder (a new one, or the earlier template)")
    if out.resolve() == solution_dir.resolve():
        raise ValueError(f"{solution_dir}: the student's folder would overwrite the solution; name another with --out")
    files = {out / "assignment.json": (ASSIGNMENTS / f"{name}.json").read_text()}
    for nb_path in notebooks:
        nb = student_notebook(nb_path, out / nb_path.name, root)
        files[out / nb_path.name] = nbformat.writes(nb) + "\n"
    return files


def assign(solution_dir: Path, out: Path | None = None, check: bool = False) -> list[str]:
    """Write the student's folder, or with `check` list how the committed one differs (nothing is written)."""
    files = student_folder(solution_dir, out)
    folder = next(iter(files)).parent
    rules_here = Path(solution_dir) / "assignment.json"
    problems = []
    if rules_here.read_text() != files[folder / "assignment.json"]:
        problems.append(f"{rules_here}: differs from the instructor's rules that ship with the kit "
                        f"(kit/assignments/); copy them over it")
    if check:
        for path, text in files.items():
            if not path.exists():
                problems.append(f"{path}: missing; generate it with `python -m kit assign {solution_dir}`")
            elif path.read_text() != text:
                problems.append(f"{path}: differs from what `python -m kit assign {solution_dir}` generates")
        # A step in a sub-folder counts too; Jupyter's .ipynb_checkpoints do not.
        extra = sorted(p for p in folder.rglob("*.ipynb") if p not in files
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        problems += [f"{p}: has no solution notebook it comes from" for p in extra]
        return problems
    for path, text in files.items():
        write_text(path, text)
    return problems


def filled(template_nb: nbformat.NotebookNode, solution_nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student's copy with every stub answered by the solution's code: what a student who solved it would have."""
    for mine, theirs in zip(template_nb.cells, solution_nb.cells):
        if mine.cell_type == "code":
            mine.source = theirs.source
    return template_nb
