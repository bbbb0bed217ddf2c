"""Run notebooks headlessly with papermill and keep their executed copies.

Each notebook gets the parameters `quick`, `device` and `metrics_path` (its
tagged `parameters` cell declares them). The executed copy and the metrics land
in the output folder only when the notebook succeeded, through a temporary file
and a rename, so a failed run never replaces the last good report.
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass
class Outcome:
    notebook: Path
    ok: bool
    seconds: float
    error: str = ""


def find_notebooks(paths: list[str | Path]) -> list[Path]:
    """Notebooks named, or found (not recursively) in the folders named; notebooks/ by default."""
    found = []
    for p in map(Path, paths or [NOTEBOOKS]):
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: not a notebook (.ipynb) or a folder of notebooks")
    if not found:
        raise FileNotFoundError(f"no notebooks in {', '.join(map(str, paths or [NOTEBOOKS]))}")
    return found


def _source_index(notebook: Path, executed_index: int) -> int:
    """papermill adds one cell after the `parameters` cell; give the index in the source notebook."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    injected_at = tagged[0] + 1 if tagged else 0
    return executed_index - 1 if executed_index >= injected_at else executed_index


def _error_report(e: Exception, notebook: Path) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(e, PapermillExecutionError):
        tail = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", line) for line in e.traceback).splitlines()[-8:]
        first_line = (e.source or "").strip().splitlines()[0][:60] if (e.source or "").strip() else ""
        index = _source_index(notebook, e.cell_index)
        return f"cell {index} (`{first_line}`): {e.ename}: {e.evalue}\n    " + "\n    ".join(tail)
    return f"{type(e).__name__}: {e}"


def run_notebook(notebook: Path, out: Path, *, quick: bool, device: str, timeout: int,
                 start_timeout: int = 120, parameters: dict | None = None) -> Outcome:
    import papermill as pm

    out.mkdir(parents=True, exist_ok=True)
    stem = notebook.stem
    tmp_nb, tmp_metrics = out / f".{stem}.running.ipynb", out / f".{stem}.metrics.json"
    params = {"quick": quick, "device": device, "metrics_path": str(tmp_metrics.resolve()), **(parameters or {})}
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(tmp_nb), parameters=params, cwd=str(notebook.parent),
            kernel_name="python3", language="python", progress_bar=sys.stderr.isatty(), start_timeout=start_timeout,
            execution_timeout=timeout,
        )
    except Exception as e:  # the kernel may raise, die or time out: all are reported the same way
        for leftover in (tmp_nb, tmp_metrics):
            leftover.unlink(missing_ok=True)
        return Outcome(notebook, False, time.perf_counter() - start, _error_report(e, notebook))
    os.replace(tmp_nb, out / notebook.name)
    if tmp_metrics.exists():
        os.replace(tmp_metrics, out / f"{stem}.metrics.json")
    return Outcome(notebook, True, time.perf_counter() - start)


def run(paths: list[str], out: str | Path = "reports", *, quick: bool = False, device: str = "auto",
        timeout: int = 3600, fail_fast: bool = False, parameters: dict | None = None) -> int:
    """Run every notebook; print one line each; return 0 if all succeeded, else 1."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernel inherits it: no progress bars in reports
    notebooks = find_notebooks(paths)
    failed = []
    for nb in notebooks:
        result = run_notebook(nb, Path(out), quick=quick, device=device, timeout=timeout, parameters=parameters)
        status = "ok" if result.ok else "FAILED"
        print(f"{status:>6}  {nb.name}  {result.seconds:.1f}s", flush=True)
        if not result.ok:
            print(f"        {result.error}", file=sys.stderr, flush=True)
            failed.append(result)
            if fail_fast:
                break
    if failed:
        print(f"{len(failed)} of {len(notebooks)} notebook(s) failed: {', '.join(f.notebook.name for f in failed)}",
              file=sys.stderr)
        return 1
    return 0
