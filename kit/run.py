"""Run notebooks headlessly with papermill and keep their executed copies.

Each notebook runs in its own worker process (its own process group), so a
kernel that dies or hangs past the timeout is stopped and reported like any
other failure, and several notebooks can run at once (`jobs`). Each gets the
parameters `quick`, `device` and `metrics_path` (its tagged `parameters` cell
declares them). Outputs move into the output folder through temporary files
and renames, and only when the notebook succeeded: a failed or interrupted run
never replaces the last good report.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.files import replacing, report_folder, write_text

PACKAGE = Path(__file__).resolve().parent
NOTEBOOKS = PACKAGE.parent / "notebooks"


@dataclass
class Outcome:
    notebook: str  # the notebook's file name
    status: str  # "ok", "failed", "skipped"
    seconds: float
    device: str = ""
    error: str = ""
    inputs: str = ""  # hash of what the run depended on, for --changed-only


def find_notebooks(paths: list[str | Path]) -> list[tuple[Path, Path]]:
    """(notebook, its report sub-folder) for the notebooks named and those under the folders named
    (notebooks/ by default), sub-folders included except `template` ones, whose stubs cannot run.

    A notebook in a sub-folder of a named folder reports into the same sub-folder of --out.
    """
    found = []
    for p in map(Path, paths or [NOTEBOOKS]):
        if p.is_dir():
            for q in sorted(p.rglob("*.ipynb")):
                parts = q.relative_to(p).parts
                if any(part.startswith(".") or part == "template" or part.endswith("_files") for part in parts):
                    continue
                found.append((q, q.parent.relative_to(p)))
        elif p.suffix == ".ipynb" and p.exists():
            found.append((p, Path()))
        else:
            raise FileNotFoundError(f"{p}: not a notebook (.ipynb) or a folder of notebooks")
    if not found:
        raise FileNotFoundError(f"no notebooks in {', '.join(map(str, paths or [NOTEBOOKS]))}")
    reports = [sub / nb.name for nb, sub in found]
    if len(set(reports)) != len(reports):
        raise ValueError(f"two notebooks would write the same report: {sorted(map(str, reports))}")
    return found


def inputs_hash(notebook: Path, parameters: dict) -> str:
    """What a run depends on: the notebook, its parameters and the kit's own source."""
    h = hashlib.sha256(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    for source in sorted(PACKAGE.glob("*.py")):
        h.update(source.read_bytes())
    return h.hexdigest()[:16]


# --- the worker: executes one notebook (runs as `python -m kit.run`) -------------------

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


def _save_figures(executed: Path, folder: Path) -> None:
    """Every PNG a notebook showed, as files: reports/<name>_files/cell<i>-<k>.png."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    tmp = folder.with_name(f".{folder.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for i, cell in enumerate(nb.cells):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for k, png in enumerate(pngs):
            (tmp / f"cell{i:02d}-{k}.png").write_bytes(base64.b64decode(png))
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        os.replace(folder, old)
        os.replace(tmp, folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, folder)


def _relative_paths(executed: Path, notebook: Path, out: Path) -> None:
    """papermill records absolute paths; keep them relative so no machine's layout lands in a report."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    meta["input_path"] = os.path.relpath(notebook.resolve(), out.resolve())
    meta["output_path"] = notebook.name
    nbformat.write(nb, executed)


def execute(notebook: Path, out: Path, parameters: dict, start_timeout: int) -> Outcome:
    """Execute one notebook in this process; move its outputs into `out` only on success."""
    import papermill as pm

    stem = notebook.stem
    tmp_nb, tmp_metrics = out / f".{stem}.running.ipynb", out / f".{stem}.metrics.running.json"
    # Relative to the notebook's folder (its working directory), so no machine's path lands in a report.
    params = {**parameters, "metrics_path": os.path.relpath(tmp_metrics.resolve(), notebook.parent.resolve())}
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(tmp_nb), parameters=params, cwd=str(notebook.parent),
            kernel_name="python3", language="python", progress_bar=sys.stderr.isatty(),
            start_timeout=start_timeout,
        )
    except Exception as e:  # the kernel may raise or die: both are reported the same way
        for leftover in (tmp_nb, tmp_metrics):
            leftover.unlink(missing_ok=True)
        return Outcome(notebook.name, "failed", time.perf_counter() - start, str(parameters.get("device", "")),
                       _error_report(e, notebook))
    seconds = time.perf_counter() - start
    device = str(parameters.get("device", ""))
    if tmp_metrics.exists():
        device = json.loads(tmp_metrics.read_text()).get("device", device)
        os.replace(tmp_metrics, out / f"{stem}.metrics.json")
    _relative_paths(tmp_nb, notebook, out)
    _save_figures(tmp_nb, out / f"{stem}_files")
    os.replace(tmp_nb, out / notebook.name)
    return Outcome(notebook.name, "ok", seconds, device)


def _worker(argv: list[str]) -> None:
    notebook, out, params, start_timeout, result = argv
    outcome = execute(Path(notebook), Path(out), json.loads(params), int(start_timeout))
    write_text(Path(result), json.dumps(asdict(outcome)))


def out_folder(notebook: Path, sub: Path, out: str | Path | None) -> Path:
    """Where `notebook` (found in sub-folder `sub` of a named folder) reports: see run()."""
    if out is not None:
        return Path(out) / sub
    return report_folder(notebook) or Path("reports") / sub


def refresh_text(notebook: Path, out: Path) -> Path:
    """Copy a notebook's Markdown into its executed copy in `out`, whose code must be the same.

    Target, Result and Analysis are written after a reference run; this puts them
    into the report without running it again (and refuses when the code differs).
    """
    import nbformat

    from kit.check import ran_cells

    executed_path = out / notebook.name
    if not executed_path.exists():
        raise FileNotFoundError(f"{executed_path}: no report to refresh; run `python -m kit run {notebook}` first")
    source = nbformat.read(notebook, as_version=4)
    executed = nbformat.read(executed_path, as_version=4)
    ran = ran_cells(executed)
    if [(c.cell_type, c.source if c.cell_type == "code" else "") for c in ran] != \
            [(c.cell_type, c.source if c.cell_type == "code" else "") for c in source.cells]:
        raise ValueError(f"{executed_path} ran other code or other cells than {notebook}; "
                         f"run it again instead: python -m kit run {notebook}")
    for old, new in zip(ran, source.cells):
        if old.cell_type == "markdown":
            old.source = new.source
    with replacing(executed_path) as tmp:
        nbformat.write(executed, tmp)
    return executed_path


# --- the batch ------------------------------------------------------------------------

@dataclass
class _Job:
    notebook: Path
    process: subprocess.Popen
    started: float
    result: Path
    inputs: str


def _start(notebook: Path, out: Path, params: dict, start_timeout: int, threads: int, inputs: str) -> _Job:
    result = out / f".{notebook.stem}.outcome.json"
    result.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    process = subprocess.Popen(
        [sys.executable, "-m", "kit.run", str(notebook.resolve()), str(out.resolve()), json.dumps(params),
         str(start_timeout), str(result)],
        env=env, start_new_session=True,  # its own process group: a hung kernel goes with it
    )
    return _Job(notebook, process, time.perf_counter(), result, inputs)


def _finish(job: _Job, timed_out: bool, timeout: int) -> Outcome:
    seconds = time.perf_counter() - job.started
    if timed_out:
        os.killpg(job.process.pid, signal.SIGKILL)
        job.process.wait()
    if timed_out or not job.result.exists():  # a killed or dead worker leaves its half-written files
        for leftover in job.result.parent.glob(f".{job.notebook.stem}.*running*"):
            leftover.unlink()
    if timed_out:
        outcome = Outcome(job.notebook.name, "failed", seconds,
                          error=f"timed out after {timeout}s (the kernel hung or the run is too long); stopped")
    elif job.result.exists():
        outcome = Outcome(**json.loads(job.result.read_text()))
        job.result.unlink()
    else:
        outcome = Outcome(job.notebook.name, "failed", seconds,
                          error=f"the worker died with exit code {job.process.returncode} (out of memory?)")
    outcome.inputs = job.inputs
    return outcome


def _skip_unchanged(notebook: Path, out: Path, inputs: str) -> Outcome | None:
    previous = out / f"{notebook.stem}.run.json"
    if previous.exists() and (out / notebook.name).exists():
        last = json.loads(previous.read_text())
        if last.get("status") == "ok" and last.get("inputs") == inputs:
            return Outcome(notebook.name, "skipped", 0.0, last.get("device", ""), inputs=inputs)
    return None


def run(paths: list[str], out: str | Path | None = None, *, quick: bool = False, device: str = "auto",
        timeout: int = 3600, start_timeout: int = 120, jobs: int = 1, fail_fast: bool = False,
        changed_only: bool = False, parameters: dict | None = None, threads: int | None = None) -> int:
    """Run every notebook; print one line each; write the results tables; 0 if all succeeded, else 1.

    Without `out`, a notebook under notebooks/ reports into the same sub-folders of
    reports/ beside it (where `python -m kit check` looks), any other into ./reports.
    """
    from kit.report import write_report

    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, got {jobs}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be 1 or more, got {threads}")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernels inherit it: no progress bars in reports
    notebooks = [(nb, out_folder(nb, sub, out)) for nb, sub in find_notebooks(paths)]
    params = {"quick": quick, "device": device, **(parameters or {})}
    threads = threads or max(1, (os.cpu_count() or 1) // min(jobs, len(notebooks)))
    queue, running, outcomes = list(notebooks), [], []
    stop = False
    while queue or running:
        while queue and len(running) < jobs and not stop:
            nb, folder = queue.pop(0)
            folder.mkdir(parents=True, exist_ok=True)
            inputs = inputs_hash(nb, params)
            skipped = _skip_unchanged(nb, folder, inputs) if changed_only else None
            if skipped:
                outcomes.append(skipped)
                print(f"  skip  {nb.name}  unchanged since its last good run", flush=True)
                continue
            running.append(_start(nb, folder, params, start_timeout, threads, inputs))
        if stop and not running:
            break
        time.sleep(0.2)
        for job in list(running):
            late = time.perf_counter() - job.started > timeout
            if job.process.poll() is None and not late:
                continue
            running.remove(job)
            outcome = _finish(job, late, timeout)
            outcomes.append(outcome)
            _report_line(outcome)
            stem, folder = job.notebook.stem, job.result.parent
            if outcome.status == "ok":  # the last good run; a failure is kept beside it, not over it
                write_text(folder / f"{stem}.run.json", json.dumps(asdict(outcome), indent=1))
                (folder / f"{stem}.failed.json").unlink(missing_ok=True)
            else:
                write_text(folder / f"{stem}.failed.json", json.dumps(asdict(outcome), indent=1))
                if fail_fast:
                    stop, queue = True, []
    for folder in sorted({folder for _, folder in notebooks}, key=lambda f: -len(f.parts)):
        write_report(folder)  # one results table per report folder, the deepest first: each links those below
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"{len(failed)} of {len(notebooks)} notebook(s) failed: {', '.join(o.notebook for o in failed)}",
              file=sys.stderr)
        return 1
    return 0


def _report_line(o: Outcome) -> None:
    print(f"{'ok' if o.status == 'ok' else 'FAILED':>6}  {o.notebook}  {o.seconds:.1f}s", flush=True)
    if o.error:
        print(f"        {o.error}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1:])
