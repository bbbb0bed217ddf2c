"""benchmarks/gpu_home.py brings a GPU run's archive home, report by report: what the batch finished replaces the
report here, what it did not leaves the report here as it was."""
import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_home  # noqa: E402

STEP = "03_lighter"  # a real report: its record is read again for the folder's tables


def report(folder: Path, stem: str, timings: dict, status: str = "ok", only=(".ipynb", ".metrics.json")):
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in only:
        shutil.copy(ROOT / "reports" / f"{STEP}{suffix}", folder / f"{stem}{suffix}")
    run = json.loads((ROOT / "reports" / f"{STEP}.run.json").read_text())
    (folder / f"{stem}.run.json").write_text(json.dumps({**run, "notebook": f"{stem}.ipynb", "status": status,
                                                          "timings": timings}))


def test_what_the_batch_finished_comes_home_and_nothing_else(tmp_path, capsys):
    repo, work = tmp_path / "repo", tmp_path / "work"
    for stem in (STEP, "other"):
        (repo / "notebooks" / "sub").mkdir(parents=True, exist_ok=True)
        (repo / "notebooks" / "sub" / f"{stem}.ipynb").write_text("{}")
        report(repo / "reports" / "sub", stem, {"cpu": 5.0})
    (repo / "reports" / "sub" / f"{STEP}.failed.json").write_text("{}")  # an earlier failed try, now superseded
    (repo / "benchmarks" / "gpu").mkdir(parents=True)
    (repo / "benchmarks" / "gpu" / "batch-6.log").write_text("the last run's")
    (repo / "benchmarks" / "RESULTS.md").write_text("before")
    report(work / "reports" / "sub", STEP, {"cpu": 5.0, "NVIDIA H200": 1.0})
    (work / "reports" / "sub" / f"{STEP}_files").mkdir()
    (work / "reports" / "sub" / f"{STEP}_files" / "cell1-0.png").write_bytes(b"png")
    report(work / "reports" / "sub", "other", {"NVIDIA H200": 1.0}, status="failed")  # stopped: stays as it was
    report(work / "reports" / "sub", "unknown", {"NVIDIA H200": 1.0})  # no such notebook here
    report(work / "reports" / "sub", "partial", {"NVIDIA H200": 1.0}, only=(".ipynb",))  # no record
    (repo / "notebooks" / "sub" / "partial.ipynb").write_text("{}")
    (work / "RESULTS.md").write_text("after")
    (work / "batch.log").write_text("this run's")
    (work / "checks.json").write_text("{}")
    archive = tmp_path / "results.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work, arcname=".")

    replaced, logs = gpu_home.bring_home(archive, repo)
    assert replaced == [repo / "notebooks" / "sub" / f"{STEP}.ipynb"]
    here = repo / "reports" / "sub"
    assert json.loads((here / f"{STEP}.run.json").read_text())["timings"] == {"cpu": 5.0, "NVIDIA H200": 1.0}
    assert (here / f"{STEP}_files" / "cell1-0.png").read_bytes() == b"png"
    assert not (here / f"{STEP}.failed.json").exists()
    assert json.loads((here / "other.run.json").read_text())["timings"] == {"cpu": 5.0}
    assert not (here / "unknown.run.json").exists() and not (here / "partial.run.json").exists()
    assert "the archive lacks partial.metrics.json" in capsys.readouterr().err
    assert f"{STEP}.ipynb" in (here / "README.md").read_text()  # the folder's tables, written again
    assert (repo / "benchmarks" / "RESULTS.md").read_text() == "after"
    assert [p.name for p in logs] == ["batch-7.log", "checks-7.json"]
    assert (repo / "benchmarks" / "gpu" / "batch-6.log").read_text() == "the last run's"


def test_an_unreadable_archive_changes_nothing(tmp_path, capsys):
    bad = tmp_path / "results.tgz"
    bad.write_text("not an archive")
    assert gpu_home.main([str(bad)]) == 2
    assert "not a readable archive of gpu_run.sh" in capsys.readouterr().err


def test_only_the_notebooks_named_come_home(tmp_path, capsys):
    repo, work = tmp_path / "repo", tmp_path / "work"
    (repo / "notebooks" / "sub").mkdir(parents=True)
    for stem in (STEP, "other", "absent"):
        (repo / "notebooks" / "sub" / f"{stem}.ipynb").write_text("{}")
        report(repo / "reports" / "sub", stem, {"cpu": 5.0})
    for stem in (STEP, "other"):
        report(work / "reports" / "sub", stem, {"cpu": 5.0, "NVIDIA H200": 1.0})
    archive = tmp_path / "results.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work, arcname=".")
    named = [repo / "notebooks" / "sub" / f"{STEP}.ipynb", repo / "notebooks" / "sub" / "absent.ipynb"]
    replaced, _ = gpu_home.bring_home(archive, repo, only=named)
    assert replaced == [named[0]]
    here = repo / "reports" / "sub"
    assert json.loads((here / "other.run.json").read_text())["timings"] == {"cpu": 5.0}  # not named: as it was
    said = capsys.readouterr().err
    assert "left in the archive: sub/other.ipynb (not named with --only)" in said
    assert "absent.ipynb: the archive has no finished full run of it; its report stays" in said
    for stray in (repo / "reports" / "sub" / f"{STEP}.ipynb", repo / "notebooks" / "sub" / "nowhere.ipynb"):
        with pytest.raises(ValueError, match="--only names notebooks below") as refused:
            gpu_home.bring_home(archive, repo, only=[stray])
        assert str(stray.resolve()) in str(refused.value)
    assert json.loads((here / "other.run.json").read_text())["timings"] == {"cpu": 5.0}
