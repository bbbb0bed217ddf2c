"""Settings for every pytest run, the unit tests and the nbval run of reports/ alike."""
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")  # no screen in CI
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in logs or compared outputs
os.environ.setdefault("KIT_QUICK", "1")  # notebooks run as smoke runs under nbval (their parameters cell reads it)

NBVAL_SANITIZE = Path(__file__).parent / "tests" / "nbval_sanitize.cfg"


def pytest_configure(config):
    # nbval opens the file relative to the working folder; an absolute path works from anywhere.
    if getattr(config.option, "nbval_sanitize_with", "") is None:
        config.option.nbval_sanitize_with = str(NBVAL_SANITIZE)
