"""Atomic writes, and where a notebook's report lives."""
from pathlib import Path

import pytest

from kit.files import BatchLock, BatchLockedError, replacing, report_folder, write_text


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


@pytest.mark.parametrize("held, wanted", [("r", "r/sub"), ("r/sub/deeper", "r"), ("r", "r")])
def test_a_batch_lock_sees_a_live_batch_above_inside_or_in_its_folder(tmp_path, held, wanted):
    import json
    import os

    (tmp_path / held).mkdir(parents=True)
    (tmp_path / held / BatchLock.NAME).write_text(json.dumps({"pid": os.getppid(), "started": "now"}))  # alive
    with pytest.raises(BatchLockedError, match=f"process {os.getppid()}.*{held}"):
        with BatchLock(tmp_path / wanted):
            pass
    assert not (tmp_path / wanted / BatchLock.NAME).exists() or held == wanted  # its own lock given back


def test_a_lock_left_by_a_finished_batch_is_taken_over(tmp_path):
    import json

    (tmp_path / "r" / "sub").mkdir(parents=True)
    (tmp_path / "r" / "sub" / BatchLock.NAME).write_text(json.dumps({"pid": 2 ** 22 + 12345}))  # no such process
    with BatchLock(tmp_path / "r"):
        assert (tmp_path / "r" / BatchLock.NAME).exists()
    assert not (tmp_path / "r" / BatchLock.NAME).exists()
