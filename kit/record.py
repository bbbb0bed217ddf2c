"""A run's metrics, written in a machine-readable form next to the executed notebook."""
from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from kit.models import count_parameters
from kit.train import History


def metrics(history: History, model: nn.Module, *, device: str, seed: int, seconds: float, **extra) -> dict:
    """What a Result cell may claim: parameters, best accuracies with their epochs, the full history."""
    best_test, best_test_epoch = history.best("test_acc")
    best_train, best_train_epoch = history.best("train_acc")
    return {
        "parameters": count_parameters(model),
        "epochs": len(history),
        "best_train_acc": best_train, "best_train_epoch": best_train_epoch,
        "best_test_acc": best_test, "best_test_epoch": best_test_epoch,
        "last_test_acc": history.last(3),
        "device": device, "seed": seed, "seconds": seconds,
        **extra,
        "history": history.to_dict()["epochs"],
    }


def save_metrics(path: str | os.PathLike | None, record: dict) -> None:
    """Write `record` as JSON atomically (nothing when `path` is empty)."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
