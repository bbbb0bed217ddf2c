"""Writing files so that a reader sees the old version or the new one, never half of one."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)  # atomic: same folder, same file system
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def report_folder(notebook: str | os.PathLike) -> Path | None:
    """Where a notebook under a `notebooks/` folder keeps its report: the same sub-folders of the `reports/`
    folder beside it (notebooks/assignments/x.ipynb -> reports/assignments/). None outside `notebooks/`."""
    parts = Path(notebook).resolve().parts
    if "notebooks" not in parts[:-1]:
        return None
    i = len(parts) - 2 - parts[-2::-1].index("notebooks")
    return Path(*parts[:i]) / "reports" / Path(*parts[i + 1:-1])
