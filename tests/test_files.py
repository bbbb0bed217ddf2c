"""Atomic writes, and where a notebook's report lives."""
from pathlib import Path

import pytest

from kit.files import replacing, report_folder, write_text


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "results.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("the run died")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_reports_mirror_the_sub_folders_of_notebooks(tmp_path):
    root = tmp_path / "kit-repo"
    assert report_folder(root / "notebooks" / "01_setup.ipynb") == root / "reports"
    assert report_folder(root / "notebooks" / "assignments" / "mnist" / "step1.ipynb") == \
        root / "reports" / "assignments" / "mnist"
    # the innermost notebooks/ folder counts; a file named "notebooks" does not
    assert report_folder(root / "notebooks" / "x" / "notebooks" / "a.ipynb") == root / "notebooks" / "x" / "reports"
    assert report_folder(tmp_path / "elsewhere" / "a.ipynb") is None
    assert report_folder(Path("notebooks")) is None
