"""The GitHub Actions workflow is linted here, so it cannot rot unseen."""
import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "notebooks.yml"


def test_workflow_is_valid_against_the_github_schema():
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linter_would_catch_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: a/b@v1\n        wth: {}\n")
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(bad)], capture_output=True, text=True)
    assert done.returncode == 1


def test_workflow_has_the_steps_the_kit_needs():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push", "pull_request"}
    assert wf["concurrency"]["cancel-in-progress"] is True
    steps = wf["jobs"]["validate"]["steps"]
    runs = " | ".join(s.get("run", "") for s in steps)
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    for command in ("pip install -r requirements.txt", "kit data fetch mnist", "pytest tests", "pytest reports",
                    "kit check notebooks reports"):
        assert command in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"


def test_the_site_workflow_builds_on_every_push_and_publishes_from_main():
    site = Path(WORKFLOW.parent / "site.yml")
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(site)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    wf = yaml.safe_load(site.read_text())
    runs = " | ".join(s.get("run", "") for s in wf["jobs"]["build"]["steps"])
    assert "kit site" in runs and wf["jobs"]["deploy"]["if"] == "github.ref == 'refs/heads/main'"
