"""Bring a GPU run home: `python benchmarks/gpu_home.py results.tgz` (the archive benchmarks/gpu_run.sh wrote).

- Each notebook whose full run the archive's batch finished (its run record says ok) replaces its report here,
  with its record, run record and figures; a notebook the batch stopped, failed or never ran keeps the report it
  had, and so does every notebook but those named with `--only NOTEBOOK ...`, where given (the Results and
  Analyses to write again from a new run are then only theirs). The results tables of each folder that changed
  are written again from the records there.
- The bench's RESULTS.md and results.json replace those in benchmarks/ (gpu_run.sh wrote them over copies of
  these, so the other devices' sections are kept).
- The phases' logs go to benchmarks/gpu/ under the next free number (batch-7.log, checks-7.json, ...).
- Then `kit run --text-only` puts each new run's printed Result block into its notebook and report, and `kit check
  notebooks reports` lists what is left to write from the new numbers: the Results' prose and the Analyses.

The archive is read whole before anything here is replaced: a bad archive leaves the tree as it was. Exit status:
0 nothing left to write; 1 `kit check` lists what is; 2 the archive cannot be read.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOGS = ("batch.log", "bench.log", "checks.log", "checks.json", "machine.txt")
REPORT = (".ipynb", ".metrics.json", ".run.json")  # a report's files, beside its figures (NAME_files/)


def finished(reports: Path) -> list[Path]:
    """The run records (NAME.run.json) of the notebooks a batch ran in full and finished, below `reports`."""
    out = []
    for path in sorted(reports.rglob("*.run.json")):
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(run, dict) and run.get("status") == "ok" and not run.get("quick"):
            out.append(path)
    return out


def next_number(logs: Path) -> int:
    numbers = [int(m.group(1)) for p in logs.glob("*") if (m := re.search(r"-(\d+)\.\w+$", p.name))]
    return max(numbers, default=0) + 1


def bring_home(archive: Path, root: Path = ROOT, only: list[Path] | None = None) -> tuple[list[Path], list[Path]]:
    """Replace the reports, bench figures and logs from `archive` (of the reports, only those of the notebooks in
    `only`, where given); (the notebooks whose reports were replaced, the logs written)."""
    from kit.report import write_report

    wanted = None
    if only is not None:
        wanted = {Path(nb).resolve() for nb in only}
        notebooks = (root / "notebooks").resolve()
        strays = [str(nb) for nb in wanted if not (nb.is_file() and nb.suffix == ".ipynb" and nb.is_relative_to(notebooks))]
        if strays:
            raise ValueError(f"--only names notebooks below {root / 'notebooks'}; not one: {', '.join(strays)}")

    with tempfile.TemporaryDirectory(prefix="kit-gpu-home-") as tmp:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (OSError, tarfile.TarError) as e:
            raise ValueError(f"{archive}: not a readable archive of gpu_run.sh ({e})") from None
        unpacked = Path(tmp)
        reports = unpacked / "reports"
        runs = finished(reports) if reports.is_dir() else []
        plan = []  # (run record, stem, folder below reports/), each checked whole before anything is replaced
        for run in runs:
            stem = run.name[: -len(".run.json")]
            rel = run.parent.relative_to(reports)
            missing = [f"{stem}{s}" for s in REPORT if not (run.parent / f"{stem}{s}").is_file()]
            notebook = root / "notebooks" / rel / f"{stem}.ipynb"
            if not notebook.exists():
                print(f"skipped {rel / stem}.ipynb: no such notebook here", file=sys.stderr)
            elif wanted is not None and notebook.resolve() not in wanted:
                print(f"left in the archive: {rel / stem}.ipynb (not named with --only)", file=sys.stderr)
            elif missing:
                print(f"skipped {rel / stem}.ipynb: the archive lacks {', '.join(missing)}", file=sys.stderr)
            else:
                plan.append((run, stem, rel))
        if wanted is not None:
            brought = {(root / "notebooks" / rel / f"{stem}.ipynb").resolve() for _, stem, rel in plan}
            for nb in sorted(wanted - brought):
                print(f"{nb}: the archive has no finished full run of it; its report stays", file=sys.stderr)
        replaced, changed = [], set()
        for run, stem, rel in plan:
            here = root / "reports" / rel
            here.mkdir(parents=True, exist_ok=True)
            for suffix in REPORT:
                shutil.copy2(run.parent / f"{stem}{suffix}", here / f"{stem}{suffix}")
            (here / f"{stem}.failed.json").unlink(missing_ok=True)
            shutil.rmtree(here / f"{stem}_files", ignore_errors=True)
            if (run.parent / f"{stem}_files").is_dir():
                shutil.copytree(run.parent / f"{stem}_files", here / f"{stem}_files")
            replaced.append(root / "notebooks" / rel / f"{stem}.ipynb")
            changed.add(here)
        for folder in sorted(changed):
            write_report(folder)
        for name in ("RESULTS.md", "results.json"):
            if (unpacked / name).is_file():
                shutil.copy2(unpacked / name, root / "benchmarks" / name)
        logs = root / "benchmarks" / "gpu"
        logs.mkdir(parents=True, exist_ok=True)
        n, written = next_number(logs), []
        for name in LOGS:
            if (unpacked / name).is_file():
                stem, dot, ext = Path(name).name.partition(".")
                written.append(logs / f"{stem}-{n}{dot}{ext}")
                shutil.copy2(unpacked / name, written[-1])
    return replaced, written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("archive", type=Path, help="results.tgz, as gpu_run.sh wrote it")
    p.add_argument("--only", nargs="+", type=Path, metavar="NOTEBOOK",
                   help="bring home only these notebooks' reports (the bench figures and logs come all the same)")
    args = p.parse_args(argv)
    try:
        replaced, logs = bring_home(args.archive, only=args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(replaced)} report(s) replaced; logs: {', '.join(p.name for p in logs) or 'none'}")
    if not replaced:
        return 0
    kit = [sys.executable, "-m", "kit"]
    subprocess.run(kit + ["run", *map(str, replaced), "--text-only"], cwd=ROOT)
    return 1 if subprocess.run(kit + ["check", "notebooks", "reports"], cwd=ROOT).returncode else 0


if __name__ == "__main__":
    sys.exit(main())
