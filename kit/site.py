"""`python -m kit site [--out DIR]`: the course as a static website, built from the executed reports.

The site shows the reference runs as they ran: it never executes a notebook. Built with MkDocs, the
Material theme and mkdocs-jupyter, chosen because all three install with pip and build offline, render
an executed notebook with its outputs and figures as they are (`execute: false`), and are maintained;
jupyter-book 1 is in maintenance mode and jupyter-book 2 needs Node.js. The tools are an optional extra
(`pip install -e .[site]`), not a dependency of the kit.

Pages: a home page (what the kit is, the ten steps with a line each, the results table and the figure
that compares the runs), one page per executed notebook (its Colab badge, code, outputs and figures),
the assignment's and the studies' results tables. Links between notebooks are rewritten to the pages
that show them, so that no page links to a file the site does not have.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"(\[[^\]]*\]\()([^)\s]+)(\))")
TOOLS = {"mkdocs": "mkdocs", "material": "mkdocs-material", "mkdocs_jupyter": "mkdocs-jupyter"}


class SiteError(RuntimeError):
    """The site cannot be built; the message says what is missing."""


def missing_tools() -> list[str]:
    import importlib.util

    return [pip for module, pip in TOOLS.items() if importlib.util.find_spec(module) is None]


def _pages(reports: Path) -> dict[str, Path]:
    """Every executed notebook of reports/, by its stem (the stems are unique in the course)."""
    found = {}
    for nb in sorted(reports.rglob("*.ipynb")):
        if any(part.startswith(".") or part.endswith("_files") for part in nb.relative_to(reports).parts):
            continue
        found[nb.stem] = nb.relative_to(reports)
    return found


def _url(rel: Path) -> str:
    """The page URL MkDocs gives a docs file (directory URLs): a/b.ipynb -> a/b/, README.md -> ./"""
    stem = rel.with_suffix("")
    return "" if stem.name in ("index", "README") and stem.parent == Path(".") else (
        f"{stem.parent.as_posix() + '/' if stem.parent != Path('.') else ''}{stem.name}/")


def _rewrite(text: str, here: Path, targets: dict[str, Path], pages: set[Path]) -> str:
    """Links of the docs file `here` to notebooks, results tables and kept files, made into links to the site's own
    pages and files; a link to anything the site does not have keeps its text and loses its target.

    `targets` maps a file name found in a link (04_batchnorm.ipynb, a folder's README.md as 'folder/README.md',
    steps.png) to its docs file. A Markdown page links to docs files (MkDocs turns them into URLs and checks
    them); a notebook's page is HTML already, so its links go straight to the URLs."""
    notebook = here.suffix == ".ipynb"

    def fix(m):
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        name = Path(path).name
        key = name if name != "README.md" else \
            (Path(os.path.normpath((here.parent / Path(path).parent).as_posix())) / name).as_posix()
        docs_file = targets.get(key) or targets.get(name if name != "README.md" else "")
        if docs_file is None:
            return m.group(1)[1:-2] if not m.group(1).startswith("!") else m.group(0)
        if notebook:
            goal = _url(docs_file) if docs_file in pages else docs_file.as_posix()
            new = os.path.relpath(goal or ".", _url(here))
            new += "/" if goal.endswith("/") and not new.endswith("/") else ""
        else:
            new = os.path.relpath(docs_file.as_posix(), here.parent.as_posix() or ".")
        return f"{m.group(1)}{new}{'#' + anchor if anchor else ''}{m.group(3)}"

    return LINK.sub(fix, text)


def _title(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            return cell.source.lstrip()[2:].splitlines()[0].strip()
    return nb_path.stem


def _home(readme: str, results_table: str, pages: dict[str, Path], reports: Path) -> str:
    """The home page: the README's opening, the ten steps, the results table and the comparing figure."""
    opening = readme.split("\n## ")[0].split("\n", 1)[1].strip()
    steps = readme.split("## The ten drill-down steps", 1)[1].split("\n## ")[0]
    rows = [line for line in steps.splitlines() if line.startswith("|")]
    listed = []
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        stem = re.search(r"`(\d\d_[a-z0-9_]+)`", cells[1])
        if stem and stem.group(1) in pages:
            listed.append(f"{cells[0]}. [{_title(reports / pages[stem.group(1)])}]({pages[stem.group(1)].as_posix()}): "
                          f"{cells[2]}")
    return (f"# Drill-Down Kit\n\n{opening}\n\n## The ten steps\n\n" + "\n".join(listed) +
            "\n\n## Results of the reference runs\n\n" + results_table)


def build(out: str | Path = "site", reports: Path | None = None, readme: Path | None = None) -> Path:
    """Build the site into `out` (offline); returns its index.html."""
    missing = missing_tools()
    if missing:
        raise SiteError(f"the site needs {', '.join(missing)}: pip install -e .[site]  (or: pip install "
                        f"{' '.join(TOOLS.values())})")
    reports = Path(reports or ROOT / "reports")
    readme = Path(readme or ROOT / "README.md")
    if not (reports / "README.md").exists():
        raise SiteError(f"{reports} has no results table (README.md): run the notebooks first (python -m kit run)")
    out = Path(out).resolve()
    _writable_site(out)
    stage = out.with_name(f".{out.name}.staging")  # built here, then swapped in whole: a killed build leaves no half site
    try:
        if stage.exists():
            shutil.rmtree(stage)  # a build killed earlier
        stage.mkdir(parents=True)
    except OSError as e:
        raise SiteError(f"cannot write the site beside {out}: {e.strerror or e}; choose another --out") from None
    notebooks = _pages(reports)
    tables = {p.parent.relative_to(reports): p for p in sorted(reports.rglob("README.md"))
              if not any(part.startswith(".") for part in p.relative_to(reports).parts)}
    kept = [p.relative_to(reports) for pattern in ("*.png", "search.json") for p in reports.rglob(pattern)
            if not any(part.endswith("_files") or part.startswith(".") for part in p.relative_to(reports).parts)]
    targets = {f"{stem}.ipynb": rel for stem, rel in notebooks.items()}
    targets.update({(folder / "README.md").as_posix(): folder / "results.md" for folder in tables})
    targets.update({rel.name: rel for rel in kept if rel.parent == Path(".") or rel.name == "search.json"})
    pages = set(notebooks.values()) | {folder / "results.md" for folder in tables} | {Path("index.md")}
    with tempfile.TemporaryDirectory(prefix="kit-site-") as tmp:
        docs = Path(tmp) / "docs"
        for rel in notebooks.values():
            nb = nbformat.read(reports / rel, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = _rewrite(cell.source, rel, targets, pages)
            (docs / rel).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, docs / rel)
        for rel in kept:
            (docs / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(reports / rel, docs / rel)
        for folder, table in tables.items():
            local = {**targets, **{p.name: folder / p.name for p in kept if p.parent == folder}}
            (docs / folder).mkdir(parents=True, exist_ok=True)
            (docs / folder / "results.md").write_text(_rewrite(table.read_text(), folder / "results.md", local, pages))
        table = (docs / "results.md").read_text().split("\n", 1)[1]
        (docs / "index.md").write_text(_home(readme.read_text(), table, notebooks, reports))
        (Path(tmp) / "mkdocs.yml").write_text(_config(notebooks, reports, tables))
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f",
                               str(Path(tmp) / "mkdocs.yml"), "-d", str(stage)], capture_output=True, text=True,
                              cwd=tmp)  # mkdocs-jupyter keeps a cache under the working folder: not the user's
        if done.returncode != 0:
            shutil.rmtree(stage, ignore_errors=True)
            raise SiteError("mkdocs could not build the site:\n" + (done.stderr or done.stdout).strip()[-3000:])
    (stage / MARK).write_text("built by python -m kit site; kit site may replace this folder's contents\n")
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out / "index.html"


MARK = ".kit-site"


def _writable_site(out: Path) -> None:
    """Refuse a folder the build would wipe (mkdocs empties it) unless it is new, empty or an earlier site."""
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out} is a file; --out must name a folder (a new one, or an earlier site)")
    if not out.exists() or not any(out.iterdir()):
        return
    if (out / MARK).exists() or (out / "index.html").exists() and (out / "search" / "search_index.json").exists():
        return
    raise SiteError(f"{out} holds other files, which the build would delete; give a new or empty folder, "
                    "or one that holds an earlier site")


def _config(pages: dict[str, Path], reports: Path, tables: dict[Path, Path]) -> str:
    def entry(stem):
        return {_title(reports / pages[stem]): pages[stem].as_posix()}

    steps = [entry(s) for s in pages if re.match(r"\d\d_", s)]
    solution = [entry(s) for s in pages if pages[s].parent.name == "solution"]
    studies = [entry(s) for s in pages if pages[s].parent == Path("assignments")]
    nav = [{"Home": "index.md"}, {"The ten steps": steps}]
    solution_table = Path("assignments/mnist_4_steps/solution")
    if solution:
        nav.append({"The four-step assignment": solution + ([{"Results": (solution_table / "results.md").as_posix()}]
                                                            if solution_table in tables else [])})
    if studies:
        nav.append({"Studies": studies + ([{"Results": "assignments/results.md"}]
                                          if Path("assignments") in tables else [])})
    nav.append({"All results": "results.md"})
    config = {
        "site_name": "Drill-Down Kit",
        "site_description": "Design small CNNs with discipline: ten steps on MNIST, an assignment and two studies",
        "docs_dir": "docs",
        "theme": {"name": "material", "font": False,  # no web fonts: the site builds and reads offline
                  "features": ["navigation.footer", "navigation.sections", "navigation.top"]},
        "plugins": [{"search": {}}, {"mkdocs-jupyter": {"execute": False, "include_source": True,
                                                        "ignore_h1_titles": True}}],
        "markdown_extensions": ["tables", "toc"],
        "nav": nav,
    }
    return json.dumps(config, indent=1)  # JSON is YAML


def serve_hint(index: Path) -> str:
    return (f"built the site in {index.parent}; open {index} in a browser, or serve it with "
            f"`python -m http.server -d {index.parent}` and open http://localhost:8000")
