"""Drill-Down Kit: data, models and loops for designing small CNNs with discipline.

Notebooks do one import, `import kit`, and reach everything through it:
`setup = kit.setup(...)`, `kit.models.LighterNet`, `kit.Trainer`, `kit.plots.curves(...)`.
"""
from kit import (
    callbacks,
    colab,
    data,
    formats,
    history,
    integrity,
    loaders,
    models,
    plots,
    record,
    rf,
    summary,
    train,
    transforms,
)
from kit.callbacks import EMA, L1, Callback, Distillation, OneCycle, Plateau, StepLR
from kit.data import ChecksumError, DataError, load, stats
from kit.formats import ImageSet
from kit.history import History, NonFiniteLossError
from kit.lesson import QUICK_IMAGES, Setup, setup
from kit.loaders import ClassicLoader, DeviceLoader, make_loaders
from kit.models import CompactNet, ConvBlock, GapHead, TransitionBlock, count_parameters
from kit.record import Budget
from kit.train import Trainer, pick_device, set_seed
from kit.transforms import Augment

__version__ = "0.2.0"
integrity.note()  # the kit as it ships: a run made after a notebook changed it says so in its record
__all__ = ["callbacks", "colab", "data", "formats", "history", "loaders", "models", "plots", "record", "rf", "summary",
           "train", "transforms", "EMA", "L1", "Callback", "Distillation", "OneCycle", "Plateau", "StepLR", "ChecksumError",
           "DataError", "load", "stats", "ImageSet", "History", "NonFiniteLossError", "QUICK_IMAGES", "Setup", "setup",
           "ClassicLoader", "DeviceLoader", "make_loaders", "CompactNet", "ConvBlock", "GapHead", "TransitionBlock",
           "count_parameters", "Budget", "Trainer", "pick_device", "set_seed", "Augment"]
