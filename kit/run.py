"""Run notebooks headlessly with papermill and keep their executed copies: `python -m kit run`.

Each notebook runs in a worker process of its own (kit.worker) in its own process
group, so a kernel that dies or hangs past its timeout is stopped and reported like
any other failure, and several notebooks can run at once (`jobs`). Before it starts,
the batch prints its plan: each notebook with the time its last good run took on this
kind of device. While it runs, each notebook's epoch lines stream to the terminal.

A report is one unit: the worker stages the executed notebook, its record and its
figures, and only a notebook that succeeded replaces its previous report, in one
step (kit.files.commit_report). One batch at a time writes into a folder (a lock);
Ctrl-C or SIGTERM stops the workers and their kernels, keeps every report whole, and
says what finished and what did not.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.files import (
    SMOKE,
    BatchLock,
    check_writable,
    commit_report,
    discard,
    read_notebook,
    recover,
    replacing,
    report_folder,
    staging,
    write_text,
)
from kit.worker import Outcome

PACKAGE = Path(__file__).resolve().parent
NOTEBOOKS = PACKAGE.parent / "notebooks"
QUICK_TIMEOUT = 900  # seconds a smoke run may take, unless --timeout says otherwise


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a batch."""


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
        elif p.suffix == ".ipynb" and p.is_file():
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
    """What a run depends on: the notebook, its parameters and every module of the kit (models included)."""
    h = hashlib.sha256(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    for source in sorted(PACKAGE.rglob("*.py")):
        h.update(source.relative_to(PACKAGE).as_posix().encode())
        h.update(source.read_bytes())
    return h.hexdigest()[:16]


def declared_parameters(notebook: Path) -> list[str] | None:
    """The names the notebook's `parameters` cell assigns (None where it has no such cell)."""
    import ast

    for cell in read_notebook(notebook).cells:
        if "parameters" in cell.metadata.get("tags", []):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                return []
            return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return None


def out_folder(notebook: Path, sub: Path, out: str | Path | None, quick: bool = False) -> Path:
    """Where `notebook` (found in sub-folder `sub` of a named folder) reports: see run()."""
    if out is not None:
        return Path(out) / sub
    home = report_folder(notebook, SMOKE if quick else "reports")
    return home or Path(SMOKE if quick else "reports") / sub


def refresh_text(notebook: Path, out: Path) -> tuple[Path, str]:
    """Refresh the text of a notebook's report in `out`, whose code must be the notebook's: the Result cell shows
    the block the run printed (`setup.result`), in place of the one an earlier run printed, and the notebook's
    Markdown is copied into the report. Target, Result prose and Analysis stay the author's, written from the
    run's numbers after a reference run; this puts them into the report without running it again.

    Returns the report and a line on the Result: rewritten, already the run's, or left to the author (and why).
    The report is written first, then the notebook: a report that cannot be written leaves both as they were.
    """
    import nbformat

    from kit.check import ran_cells

    executed_path = out / notebook.name
    if not executed_path.exists():
        raise FileNotFoundError(f"{executed_path}: no report to refresh; run `python -m kit run {notebook}` first")
    source = read_notebook(notebook)
    executed = read_notebook(executed_path)
    ran = ran_cells(executed)
    if [(c.cell_type, c.source if c.cell_type == "code" else "") for c in ran] != \
            [(c.cell_type, c.source if c.cell_type == "code" else "") for c in source.cells]:
        raise ValueError(f"{executed_path} ran other code or other cells than {notebook}; "
                         f"run it again instead: python -m kit run {notebook}")
    check_writable(executed_path, notebook)
    result, said = _printed_result(source, executed, out / f"{notebook.stem}.metrics.json")
    for old, new in zip(ran, source.cells):
        if old.cell_type == "markdown":
            old.source = new.source  # the Result cell with the printed block already in place
    with replacing(executed_path) as tmp:
        nbformat.write(executed, tmp)
    if result is not None:
        with replacing(notebook) as tmp:
            nbformat.write(source, tmp)
    return executed_path, said


def _printed_result(source, executed, record_path: Path):
    """(the notebook's Result cell, now holding the block the run printed, or None where it is left as it is;
    what was done and why)."""
    from kit.check import section
    from kit.evidence import check_parameters
    from kit.record import Record, RecordError, markdown, replace_result, result_blocks

    cell = section(source, "Result")
    if cell is None:
        return None, "the notebook has no Result cell (a Markdown cell headed '## Result')"
    try:
        record = Record.load(record_path)
    except (RecordError, OSError) as e:
        return None, f"the Result is left as it is: no readable record of the run ({e})"
    if record.quick:
        return None, "the Result is left as it is: the report is a smoke run, whose numbers are not results"
    if check_parameters(executed, record):
        return None, ("the Result is left as it is: the run was made with other parameters than the notebook's "
                      "(-p), so its numbers are not this notebook's Result")
    block = markdown(record)
    found = result_blocks(cell.source, block)
    if not found:
        return None, ("the Result is left as it is: it holds no block as `setup.result` printed it (a line with "
                      "words added, or one in a comment, is not); paste that cell's output in place of the old block")
    if len(found) > 1:
        return None, (f"the Result is left as it is: it holds {len(found)} blocks of the shape `setup.result` "
                      "printed; keep the one for this run, then refresh again")
    text = replace_result(cell.source, block)
    if text == cell.source:
        return None, "the Result already shows the run's numbers"
    cell.source = text
    return cell, (f"the Result now shows the numbers of the run in {record_path.parent}: write the rest of the "
                  "Result and the Analysis from them")


# --- the plan --------------------------------------------------------------------------------

def device_kind(device: str) -> tuple[str, str]:
    """(the device a notebook will get, the kind of device its timings are kept under: 'cpu' or the GPU's name)."""
    from kit.train import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        import torch

        return "cuda", torch.cuda.get_device_name(d)
    return d.type, d.type


def last_timings(folder: Path, stem: str) -> dict:
    path = folder / f"{stem}.run.json"
    try:
        last = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(last, dict):
        return {}
    return dict(last.get("timings") or ({last["device"]: last["seconds"]} if last.get("device") and
                                        isinstance(last.get("seconds"), (int, float)) else {}))


def recorded_timings(folder: Path, home: Path | None, stem: str) -> dict:
    """A notebook's last recorded times per kind of device, from its report in `folder`, else from its usual
    report (`home`, where it reports without --out): a batch into a fresh folder still knows them."""
    timings = last_timings(folder, stem)
    if home is not None and home.resolve() != folder.resolve():
        for kind, seconds in last_timings(home, stem).items():
            timings.setdefault(kind, seconds)
    return timings


def start_order(timings: list[dict], kind: str) -> tuple[list[int], str | None]:
    """The order to start a batch in, longest first, so that it ends soonest with several jobs: ranked by the
    last runs' times on the kind of device that has records for most of the notebooks (this kind on a tie), as
    times on different kinds do not compare. A notebook with no such record starts first (it may be long).
    Returns the indices and the kind ranked by (None: no records, the order stays as listed)."""
    counts = Counter(k for t in timings for k in t)
    if not counts:
        return list(range(len(timings))), None
    by = max(counts, key=lambda k: (counts[k], k == kind))
    return sorted(range(len(timings)), key=lambda i: (by in timings[i], -timings[i].get(by, 0.0))), by


def timeout_for(seconds: float | None, quick: bool, given: int | None) -> int | None:
    """--timeout if given; else for a smoke run QUICK_TIMEOUT; else 3x the last good run on this kind of
    device plus 10 minutes; with no such run, none: a legitimate full run is never cut short by a guess."""
    if given is not None:
        return given
    if quick:
        return QUICK_TIMEOUT
    return None if seconds is None else int(3 * seconds + 600)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "no earlier run"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# --- the batch ------------------------------------------------------------------------------

@dataclass
class _Job:
    notebook: Path
    folder: Path
    process: subprocess.Popen
    started: float
    inputs: str
    timeout: int | None
    run_id: str
    log: Path


def _start(notebook: Path, folder: Path, params: dict, start_timeout: int, threads: int, inputs: str,
           timeout: int | None, device: str) -> _Job:
    stage = staging(folder, notebook.stem)
    if stage.exists():
        import shutil

        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    run_id = uuid.uuid4().hex[:12]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           # a relative data root means the folder `kit run` was started in, not each notebook's own
           **({"KIT_DATA": str(Path(os.environ["KIT_DATA"]).expanduser().resolve())} if os.environ.get("KIT_DATA") else {}),
           "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = stage / ".worker.log"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "kit.worker", str(notebook.resolve()), str(folder.resolve()), str(stage.resolve()),
             json.dumps(params), str(start_timeout), run_id, device],
            env=env, stderr=err, start_new_session=True,  # its own process group: its kernel goes with it
        )
    return _Job(notebook, folder, process, time.perf_counter(), inputs, timeout, run_id, log)


def _stat(path: Path) -> list[str]:
    """The fields of a /proc/PID/stat file after the command's name: state, parent's pid, ..."""
    return path.read_text().rsplit(")", 1)[1].split()


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux's /proc; elsewhere none are found). The kernel is among them but not in
    the worker's process group: jupyter_client starts it in a session of its own."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(_stat(stat)[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has stopped: only its parent's wait is missing)."""
    alive = set()
    for pid in pids:
        try:
            if _stat(Path(f"/proc/{pid}/stat"))[0] != "Z":
                alive.add(pid)
        except (OSError, IndexError):
            pass
    return alive


def _stop(job: _Job) -> None:
    """Stop a worker and its kernel: SIGTERM to the group and to every process below the worker, then SIGKILL to
    whatever is left; return once all of them are gone."""
    group, family = job.process.pid, _descendants(job.process.pid)
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        for pid in _alive(family):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            job.process.poll()  # reap the worker, so that its group can empty
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                if not _alive(family):
                    return
            time.sleep(0.05)
    job.process.poll()


def _death(job: _Job) -> str:
    """Why a worker ended without an outcome: its exit status and the end of what it wrote to stderr."""
    code = job.process.returncode
    how = f"was killed by signal {signal.Signals(-code).name}" if code and code < 0 else f"exited with status {code}"
    if code == -signal.SIGKILL:
        how += " (out of memory, or stopped from outside)"
    try:
        tail = [line for line in job.log.read_text(errors="replace").splitlines() if line.strip()][-6:]
    except OSError:
        tail = []
    return f"the worker {how}" + ("; it said:\n    " + "\n    ".join(tail) if tail else "")


def _finish(job: _Job, timed_out: bool, kind: str, home: Path | None = None, quick: bool = False) -> Outcome:
    seconds = time.perf_counter() - job.started
    stage = staging(job.folder, job.notebook.stem)
    result = stage / ".outcome.json"
    if timed_out:
        _stop(job)
        outcome = Outcome(job.notebook.name, "failed", seconds, kind,
                          error=f"timed out after {job.timeout}s (the kernel hung or the run is too long); stopped "
                                "(give --timeout SECONDS for a longer run)")
    elif result.exists():
        outcome = Outcome(**json.loads(result.read_text()))
        outcome.device = kind
    else:
        outcome = Outcome(job.notebook.name, "failed", seconds, kind, error=_death(job))
    outcome.inputs, outcome.run_id, outcome.quick = job.inputs, job.run_id, quick
    stem, folder = job.notebook.stem, job.folder
    if outcome.status == "ok":  # stage the run record too, then swap the whole report in
        # the times of earlier runs on other kinds of device stay, from the usual report if this folder is new
        # a smoke run's time says nothing of a full run's (the plan and the timeouts read these)
        outcome.timings = {**recorded_timings(folder, home, stem), **({} if quick else {kind: round(outcome.seconds, 1)})}
        for hidden in (result, job.log):
            hidden.unlink(missing_ok=True)
        write_text(stage / f"{stem}.run.json", json.dumps(asdict(outcome), indent=1))
        commit_report(folder, stem)
    else:  # the last good report stays; the failure is recorded beside it
        write_text(folder / f"{stem}.failed.json", json.dumps(asdict(outcome), indent=1))
        discard(folder, stem)
    return outcome


def _skip_unchanged(notebook: Path, out: Path, inputs: str) -> Outcome | None:
    previous = out / f"{notebook.stem}.run.json"
    if previous.exists() and (out / notebook.name).exists():
        try:
            last = json.loads(previous.read_text())
        except ValueError:
            return None
        if isinstance(last, dict) and last.get("status") == "ok" and last.get("inputs") == inputs:
            return Outcome(notebook.name, "skipped", 0.0, last.get("device", ""), inputs=inputs)
    return None


def _check_parameters(notebooks: list[Path], params: dict, injected: set) -> dict[Path, dict]:
    """Each notebook's parameters to inject: a name given with -p must be one its `parameters` cell declares."""
    out, unknown = {}, {}
    for nb in notebooks:
        declared = declared_parameters(nb)
        if declared is None:
            if given := [name for name in params if name not in injected]:
                unknown[nb] = (given, "it has no cell tagged `parameters`")
            out[nb] = params  # papermill injects at the top and warns
            continue
        missing = [name for name in params if name not in declared and name not in injected]
        if missing:
            unknown[nb] = (missing, f"it declares: {', '.join(declared)}")
        out[nb] = {k: v for k, v in params.items() if k in declared}
    if unknown:
        lines = [f"  {nb}: no parameter {', '.join(repr(m) for m in missing)} ({declared})"
                 for nb, (missing, declared) in unknown.items()]
        raise ValueError("-p names a parameter that a notebook does not declare in its `parameters` cell:\n"
                         + "\n".join(lines))
    return out


def run(paths: list[str], out: str | Path | None = None, *, quick: bool = False, device: str = "auto",
        timeout: int | None = None, start_timeout: int = 120, jobs: int | None = None, fail_fast: bool = False,
        changed_only: bool = False, parameters: dict | None = None, threads: int = 1) -> int:
    """Run every notebook; print the plan, one line each, and a summary; write the results tables.
    0 if all succeeded, else 1 (130 when interrupted).

    Without `out`, a notebook under notebooks/ reports into the same sub-folders of
    reports/ beside it (where `python -m kit check` looks), any other into ./reports;
    a smoke run (`quick`) into reports-smoke/ instead, so that it never replaces a full run's report.
    """
    from kit.report import write_report

    for name, value, least in (("jobs", jobs, 1), ("threads", threads, 1), ("timeout", timeout, 1),
                               ("start timeout", start_timeout, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the kernels inherit it: no progress bars in reports
    found = find_notebooks(paths)
    notebooks = [(nb, out_folder(nb, sub, out, quick)) for nb, sub in found]
    homes = {nb: out_folder(nb, sub, None) for nb, sub in found}
    for nb, folder in notebooks:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file; --out must name a folder")
        if folder.resolve() == nb.resolve().parent:
            raise ValueError(f"--out {out} puts the report of {nb} in the notebook's own folder, where it would "
                             "replace the notebook; choose another folder")
    device_type, kind = device_kind(device)
    base = {"quick": quick, "device": device, **(parameters or {})}
    per_notebook = _check_parameters([nb for nb, _ in notebooks], base, injected={"quick", "device"})
    if jobs is None:
        jobs = min(4, os.cpu_count() or 1) if device_type == "cuda" else max(1, (os.cpu_count() or 1) // threads)
    jobs = min(jobs, len(notebooks))
    root = Path(os.path.commonpath([str(folder.resolve()) for _, folder in notebooks]))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot write reports into {root}: {e.strerror}; choose another --out") from None
    if not os.access(root, os.W_OK):
        raise ValueError(f"cannot write reports into {root}: it is read-only; choose another --out")
    with BatchLock(root):
        for folder in sorted({folder for _, folder in notebooks}):
            for line in recover(folder):
                print(f"recovered: {line}", flush=True)
        return _batch(notebooks, per_notebook, homes, quick=quick, device=device, kind=kind, timeout=timeout,
                      start_timeout=start_timeout, jobs=jobs, threads=threads, fail_fast=fail_fast,
                      changed_only=changed_only, write_report=write_report)


def _batch(notebooks, per_notebook, homes, *, quick, device, kind, timeout, start_timeout, jobs, threads, fail_fast,
           changed_only, write_report) -> int:
    plans = []
    # smoke runs take about as long as each other: they keep the listed order
    timings = [{} if quick else recorded_timings(folder, homes.get(nb), nb.stem) for nb, folder in notebooks]
    order, by = start_order(timings, kind)
    print(f"kit run: {len(notebooks)} notebook{'s' * (len(notebooks) != 1)} on {kind}"
          f"{' (smoke runs)' if quick else ''}, {jobs} at a time, {threads} CPU thread{'s' * (threads != 1)} each"
          f"{f', the longest first (by the last runs on {by})' if by and len(notebooks) > 1 else ''}", flush=True)
    width = max(len(nb.name) for nb, _ in notebooks)
    for i in order:
        (nb, folder), last = notebooks[i], timings[i].get(kind)
        limit = timeout_for(last, quick, timeout)
        plans.append((nb, folder, limit))
        print(f"  {nb.name:<{width}}  last run here: {_duration(last):>14}   "
              f"timeout: {'none' if limit is None else f'{limit} s'}", flush=True)
    queue, running, outcomes = list(plans), [], []
    stop, began = False, time.perf_counter()

    def interrupt(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        while queue or running:
            while queue and len(running) < jobs and not stop:
                nb, folder, limit = queue.pop(0)
                folder.mkdir(parents=True, exist_ok=True)
                params = per_notebook[nb]
                inputs = inputs_hash(nb, params)
                skipped = _skip_unchanged(nb, folder, inputs) if changed_only else None
                if skipped:
                    outcomes.append(skipped)
                    print(f"  skip  {nb.name}  unchanged since its last good run", flush=True)
                    continue
                running.append(_start(nb, folder, params, start_timeout, threads, inputs, limit, kind))
            if stop and not running:
                break
            time.sleep(0.2)
            for job in list(running):
                late = job.timeout is not None and time.perf_counter() - job.started > job.timeout
                if job.process.poll() is None and not late:
                    continue
                running.remove(job)
                outcome = _finish(job, late, kind, homes.get(job.notebook), quick)
                outcomes.append(outcome)
                _report_line(outcome)
                if outcome.status == "failed" and fail_fast:
                    stop, queue = True, []
    except (KeyboardInterrupt, Interrupted) as e:
        for job in running:
            _stop(job)
            discard(job.folder, job.notebook.stem)
        done = [o.notebook for o in outcomes if o.status == "ok"]
        print(f"\ninterrupted ({str(e) or 'Ctrl-C'}): the runs in progress were stopped and the reports they would "
              "have replaced are kept as they were.", file=sys.stderr)
        print(f"  finished: {', '.join(done) or 'none'}", file=sys.stderr)
        print(f"  stopped: {', '.join(j.notebook.name for j in running) or 'none'}", file=sys.stderr)
        print(f"  not started: {', '.join(nb.name for nb, _, _ in queue) or 'none'}", file=sys.stderr)
        print("  run the same command again with --changed-only to do only what is left", file=sys.stderr)
        for folder in sorted({folder for _, folder in notebooks}, key=lambda f: -len(f.parts)):
            write_report(folder)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for folder in sorted({folder for _, folder in notebooks}, key=lambda f: -len(f.parts)):
        write_report(folder)  # one results table per report folder, the deepest first: each links those below
    failed = [o for o in outcomes if o.status == "failed"]
    ran = [o for o in outcomes if o.status == "ok"]
    if ran:
        print(f"{len(ran)} notebook{'s' * (len(ran) != 1)} ran in {time.perf_counter() - began:.0f} s "
              f"({sum(o.seconds for o in ran):.0f} s of worker time)", flush=True)
    if failed:
        print(f"{len(failed)} of {len(notebooks)} notebook(s) failed: {', '.join(o.notebook for o in failed)}",
              file=sys.stderr)
        return 1
    return 0


def _report_line(o: Outcome) -> None:
    print(f"{'ok' if o.status == 'ok' else 'FAILED':>6}  {o.notebook}  {o.seconds:.1f}s", flush=True)
    if o.error:
        print(f"        {o.error}", file=sys.stderr, flush=True)
