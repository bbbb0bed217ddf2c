"""Writing files so that a reader sees the old version or the new one, never half of one.

- `write_text` / `replacing`: one file, through a temporary file and a rename.
- `commit_report` / `recover`: a report (executed notebook, its record, its figures, its run
  record) is staged whole in `.NAME.staging/`, then replaces the previous one under a journal
  (`.NAME.commit`): a run killed while staging leaves the old report, one killed after the
  journal is written leaves the new one once the next `recover` has finished the swap.
- `BatchLock`: one `kit run` at a time writes into a folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds, keeping its mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)  # atomic: same folder, same file system
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(*paths: str | os.PathLike) -> None:
    """Refuse, before anything is written, a file its owner made read-only (chmod a-w): an atomic replace would
    rewrite it behind the owner's back."""
    for path in map(Path, paths):
        if path.exists() and not path.stat().st_mode & stat.S_IWUSR:
            raise PermissionError(f"{path} is read-only; make it writable (chmod u+w) to have it rewritten")


def read_notebook(path: str | os.PathLike):
    """A notebook (nbformat 4); a file that is not one is a ValueError that names it."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except OSError:
        raise
    except Exception as e:  # not JSON, or JSON that is not a notebook
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise ValueError(f"{path}: not a readable notebook ({type(e).__name__}: {first})") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


SMOKE = "reports-smoke"  # where smoke runs report when no folder is named: apart from the full runs' reports


def report_folder(notebook: str | os.PathLike, reports: str = "reports") -> Path | None:
    """Where a notebook under a `notebooks/` folder keeps its report: the same sub-folders of the `reports/`
    folder beside it (notebooks/assignments/x.ipynb -> reports/assignments/). None outside `notebooks/`."""
    parts = Path(notebook).resolve().parts
    if "notebooks" not in parts[:-1]:
        return None
    i = len(parts) - 2 - parts[-2::-1].index("notebooks")
    return Path(*parts[:i]) / reports / Path(*parts[i + 1:-1])


# --- a report as one unit --------------------------------------------------------------------

def report_names(stem: str) -> list[str]:
    """The files and folder that make up one notebook's report."""
    return [f"{stem}.ipynb", f"{stem}.metrics.json", f"{stem}_files", f"{stem}.run.json", f"{stem}.failed.json"]


def staging(folder: Path, stem: str) -> Path:
    return folder / f".{stem}.staging"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit_report(folder: Path, stem: str) -> None:
    """Replace the report of `stem` in `folder` by what is staged for it, as one unit."""
    unit = sorted(p.name for p in staging(folder, stem).iterdir() if p.name in report_names(stem))
    # The journal names the new unit: from here on, recover() completes the swap instead of discarding it.
    write_text(folder / f".{stem}.commit", json.dumps(unit))
    _finish(folder, stem)


def _finish(folder: Path, stem: str) -> None:
    """Make the report of `stem` exactly the unit its journal names (idempotent: safe to repeat)."""
    journal, stage = folder / f".{stem}.commit", staging(folder, stem)
    unit = json.loads(journal.read_text())
    for name in report_names(stem):
        staged, current = stage / name, folder / name
        if name in unit and staged.exists():
            if current.is_dir():
                _remove(current)
            os.replace(staged, current)
        elif name not in unit and current.exists():
            _remove(current)  # part of the old report that the new one does not have (an old failure record)
    journal.unlink()
    if stage.exists():
        _remove(stage)


def discard(folder: Path, stem: str) -> None:
    """Drop what a failed or stopped run of `stem` staged; the report in place stays as it was."""
    stage = staging(folder, stem)
    if stage.exists():
        _remove(stage)


def recover(folder: Path) -> list[str]:
    """Finish the commits a killed run left half done, and discard what it had only staged.

    Returns what was done, one line each, for the caller to say.
    """
    done = []
    if not folder.is_dir():
        return done
    for journal in sorted(folder.glob(".*.commit")):
        stem = journal.name[1:-len(".commit")]
        _finish(folder, stem)
        done.append(f"{folder / stem}: finished replacing the report that an interrupted run had staged")
    for leftover in sorted([*folder.glob(".*.staging"), *folder.glob(".*.tmp")]):
        _remove(leftover)
        done.append(f"{leftover}: removed what an interrupted run left")
    return done


# --- one batch at a time per folder -------------------------------------------------------------

class BatchLockedError(RuntimeError):
    """Another `kit run` holds the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> dict | None:
    """The live run, other than this process, that holds a lock file; None where there is none."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    pid = holder.get("pid") if isinstance(holder, dict) else None
    return holder if isinstance(pid, int) and pid != os.getpid() and _alive(pid) else None


def _locked(lock: Path, holder: dict) -> BatchLockedError:
    pid = holder["pid"]
    return BatchLockedError(f"another `kit run` (process {pid}, started {holder.get('started', '?')}) is writing into "
                            f"{lock.parent}; wait for it to end, or stop it (kill {pid}), then run again")


class BatchLock:
    """`with BatchLock(folder):` one `kit run` at a time writes into a folder, its sub-folders included; a second
    one into it, into a folder inside it or into one that holds it stops at once and says which run holds it.
    A lock left by a run that no longer exists is taken over."""

    NAME = ".kit-run.lock"

    def __init__(self, folder: Path):
        self.path = Path(folder) / self.NAME

    def __enter__(self) -> BatchLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if holder := _holder(self.path):
                    raise _locked(self.path, holder) from None
                self.path.unlink(missing_ok=True)  # its run is gone: take the folder over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
            # a batch into a folder above this one, or inside it, writes where this one would
            folder = self.path.parent.resolve()
            nested = [*(a / self.NAME for a in folder.parents), *folder.glob(f"*/**/{self.NAME}")]
            for other in nested:
                if holder := _holder(other):
                    self.path.unlink(missing_ok=True)
                    raise _locked(other, holder)
            return self
        raise BatchLockedError(f"could not take {self.path}; remove it if no `kit run` is running")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
