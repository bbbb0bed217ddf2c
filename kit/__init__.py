"""Drill-Down Kit: data, models and loops for designing small CNNs with discipline.

Notebooks do one import, `import kit`, and reach everything through it:
`kit.data.load("mnist")`, `kit.ConvBlock`, `kit.Trainer`, `kit.plots.curves(...)`.
"""
import os

from kit import colab, data, formats, loaders, models, plots, record, rf, summary, train, transforms
from kit.record import Budget
from kit.data import DataError, ChecksumError, load, stats
from kit.formats import ImageSet
from kit.loaders import ClassicLoader, DeviceLoader, make_loaders
from kit.models import CompactNet, ConvBlock, GapHead, TransitionBlock, count_parameters
from kit.train import History, NonFiniteLossError, Trainer, pick_device, set_seed
from kit.transforms import Augment

__version__ = "0.1.0"

# Set by the test suite (KIT_QUICK=1): every notebook turns itself into a smoke run that records nothing.
QUICK = os.environ.get("KIT_QUICK") == "1"
QUICK_IMAGES = 2_000  # images per split in a smoke run
