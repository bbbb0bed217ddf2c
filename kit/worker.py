"""Execute one notebook with papermill into its staging folder (`python -m kit.worker`, started by kit.run).

The worker runs in a process group of its own, so `kit run` can stop it and its
kernel together. Everything it writes goes to `.NAME.staging/` beside the
report: the executed notebook, the record (the kernel finds the path in
KIT_METRICS, so no path lands in the notebook), the figures as PNG files and the
outcome. While the notebook runs, its epoch lines are echoed to the terminal,
prefixed with the notebook's name.
"""
from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.files import write_text
from kit.lesson import RECORD_ENV

# What is echoed while a notebook runs: the set-up line, the Trainer's epoch lines, run headers.
ECHO = re.compile(r"^(?:.* · )?epoch\s+\d+\s+train loss|^\d+ epochs?;|^smoke run:|^--- ")


@dataclass
class Outcome:
    notebook: str  # the notebook's file name
    status: str  # "ok", "failed", "skipped"
    seconds: float
    device: str = ""  # the kind of device it ran on: "cpu" or the GPU's name
    error: str = ""
    inputs: str = ""  # hash of what the run depended on, for --changed-only
    run_id: str = ""
    timings: dict = field(default_factory=dict)  # kind of device -> seconds of the last good run there
    quick: bool = False  # a smoke run: a failure says so too, with no record to say it


class Echo:
    """A file-like sink for papermill's stdout_file: echoes the lines worth seeing, prefixed."""

    def __init__(self, prefix: str):
        self.prefix, self.pending = prefix, ""

    def write(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if ECHO.search(line):  # one write per line: lines of notebooks running at once never mix
                sys.stdout.write(f"{self.prefix}{line}\n")
                sys.stdout.flush()

    def flush(self) -> None:
        pass


def source_index(notebook: Path, executed_index: int) -> int:
    """papermill adds one cell after the `parameters` cell; give the index in the source notebook."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    injected_at = tagged[0] + 1 if tagged else 0
    return executed_index - 1 if executed_index >= injected_at else executed_index


def error_report(e: Exception, notebook: Path, partial: Path | None = None) -> str:
    """The failing cell (by its source index and first line), the error and the end of its traceback."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(e, PapermillExecutionError):
        tail = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", line) for line in e.traceback).splitlines()[-8:]
        first_line = (e.source or "").strip().splitlines()[0][:60] if (e.source or "").strip() else ""
        index = source_index(notebook, e.cell_index)
        return f"cell {index} (`{first_line}`): {e.ename}: {e.evalue}\n    " + "\n    ".join(tail)
    where = _running_cell(notebook, partial) if partial is not None else ""
    return f"{where}{type(e).__name__}: {e}"


def _running_cell(notebook: Path, partial: Path) -> str:
    """For a kernel that died: the cell papermill had marked as running in its partial output."""
    import nbformat

    try:
        nb = nbformat.read(partial, as_version=4)
    except Exception:
        return ""
    started = [i for i, cell in enumerate(nb.cells)
               if cell.get("metadata", {}).get("papermill", {}).get("start_time")]  # later cells stay pending
    if not started:
        return ""
    i = started[-1]
    source = nb.cells[i].source.strip()
    first = source.splitlines()[0][:60] if source else ""
    return f"cell {source_index(notebook, i)} (`{first}`): the kernel died while running it: "


def save_figures(executed: Path, folder: Path) -> None:
    """Every PNG a notebook showed, as files: NAME_files/cell<i>-<k>.png."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    folder.mkdir(parents=True, exist_ok=True)
    for i, cell in enumerate(nb.cells):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for k, png in enumerate(pngs):
            (folder / f"cell{i:02d}-{k}.png").write_bytes(base64.b64decode(png))


def machine_paths() -> dict[str, str]:
    """This machine's folders that an output may name, and what a report says instead."""
    from kit.data import data_root

    found = {}
    try:
        found[str(data_root())] = "$KIT_DATA"
    except Exception:  # a broken data root is the notebook's to report, not the stamp's
        pass
    found[str(Path.home())] = "~"
    return found


def unpathed(nb) -> None:
    """Replace this machine's folders in a notebook's text outputs by $KIT_DATA and ~."""
    paths = sorted(machine_paths().items(), key=lambda kv: -len(kv[0]))
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if "text" in o:
                for path, word in paths:
                    o["text"] = o["text"].replace(path, word)
            for key in ("text/plain", "text/markdown"):
                if key in o.get("data", {}):
                    for path, word in paths:
                        o["data"][key] = o["data"][key].replace(path, word)


def input_path(notebook: Path, out: Path) -> str:
    """The notebook as its report names it: relative to the report where both lie in the folder `kit run` was
    started in, else its bare name (a path that climbs out of the project would say where this machine keeps it)."""
    here, notebook, out = Path.cwd().resolve(), notebook.resolve(), out.resolve()
    if notebook.is_relative_to(here) and out.is_relative_to(here):
        return Path(os.path.relpath(notebook, out)).as_posix()
    return notebook.name


def stamp(executed: Path, notebook: Path, out: Path, run_id: str, parameters: dict) -> None:
    """Keep the report free of this machine's paths, and mark it with its run's id and parameters."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    unpathed(nb)
    meta = nb.metadata.get("papermill", {})
    meta["input_path"] = input_path(notebook, out)
    meta["output_path"] = notebook.name
    nb.metadata["kit"] = {"run_id": run_id, "parameters": parameters}
    nbformat.write(nb, executed)


def execute(notebook: Path, out: Path, stage: Path, parameters: dict, start_timeout: int, run_id: str,
            device: str) -> Outcome:
    """Execute one notebook into `stage`; the caller commits the stage as the new report if it succeeded."""
    import papermill as pm

    stem = notebook.stem
    executed, record = stage / notebook.name, stage / f"{stem}.metrics.json"
    os.environ[RECORD_ENV] = str(record.resolve())  # the kernel inherits it
    # Figures go into the report whatever backend the caller's shell chose (MPLBACKEND=Agg shows nothing).
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(executed), parameters=parameters, cwd=str(notebook.parent),
            kernel_name="python3", language="python", progress_bar=False, start_timeout=start_timeout,
            stdout_file=Echo(f"  [{stem}] "),
        )
    except Exception as e:  # the kernel may raise or die: both are reported the same way
        return Outcome(notebook.name, "failed", time.perf_counter() - start, device,
                       error_report(e, notebook, executed if executed.exists() else None), run_id=run_id)
    seconds = time.perf_counter() - start
    stamp(executed, notebook, out, run_id, parameters)
    save_figures(executed, stage / f"{stem}_files")
    return Outcome(notebook.name, "ok", seconds, device, run_id=run_id)


def main(argv: list[str]) -> None:
    notebook, out, stage, params, start_timeout, run_id, device = argv
    stage = Path(stage)
    outcome = execute(Path(notebook), Path(out), stage, json.loads(params), int(start_timeout), run_id, device)
    write_text(stage / ".outcome.json", json.dumps(asdict(outcome)))


if __name__ == "__main__":
    main(sys.argv[1:])
