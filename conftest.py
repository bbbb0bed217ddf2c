"""Settings for every pytest run, the unit tests and the nbval run of reports/ alike."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")  # no screen in CI
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in logs or compared outputs
os.environ.setdefault("KIT_QUICK", "1")  # notebooks run as smoke runs under nbval (their parameters cell reads it)
