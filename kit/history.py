"""What a training run leaves behind: its per-epoch History, and the errors and mistakes it reports.

Every figure a Result may claim (best accuracies and their epochs, the last K
test accuracies, the budget's verdict) is derived from this history, never
stored beside it as a number of its own.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import torch

from kit.files import write_text


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # from 1, as the course counts them
    train_loss: float
    train_acc: float  # percent
    test_loss: float
    test_acc: float  # percent
    lr: float  # the learning rate the epoch started with (the one its first step trained with)
    seconds: float  # training and testing time of this epoch


def epoch_line(r: EpochRecord, name: str = "") -> str:
    """An epoch's log line, as the Trainer prints it (kit.evidence reads it back)."""
    return (f"{name + ' · ' if name else ''}epoch {r.epoch:>2}  train loss {r.train_loss:.4f} "
            f"acc {r.train_acc:6.2f}%  test loss {r.test_loss:.4f} acc {r.test_acc:6.2f}%  lr {r.lr:.3g}  "
            f"{r.seconds:.1f}s")


@dataclass
class History:
    """Per-epoch results of one run."""

    epochs: list[EpochRecord] = field(default_factory=list)

    def append(self, record: EpochRecord) -> None:
        self.epochs.append(record)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, i: int) -> EpochRecord:
        return self.epochs[i]

    def column(self, name: str) -> list[float]:
        return [getattr(r, name) for r in self.epochs]

    def best(self, metric: str = "test_acc") -> tuple[float, int]:
        """(best value, its epoch); the first epoch wins a tie. Losses are minimised."""
        if not self.epochs:
            raise ValueError("the history is empty: nothing has been trained yet")
        pick = min if metric.endswith("loss") else max
        record = pick(self.epochs, key=lambda r: getattr(r, metric))
        return getattr(record, metric), record.epoch

    def last(self, k: int, metric: str = "test_acc") -> list[float]:
        return self.column(metric)[-k:]

    def to_list(self) -> list[dict]:
        return [asdict(r) for r in self.epochs]

    @classmethod
    def from_list(cls, epochs: list[dict]) -> History:
        return cls([EpochRecord(**r) for r in epochs])

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically: a reader sees the old file or the new one, never half."""
        write_text(path, json.dumps(self.to_list(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        with open(path) as f:
            return cls.from_list(json.load(f))

    def _repr_markdown_(self) -> str:
        rows = "\n".join(
            f"| {r.epoch} | {r.train_loss:.4f} | {r.train_acc:.2f} | {r.test_loss:.4f} | {r.test_acc:.2f} | {r.lr:.3g} "
            f"| {r.seconds:.1f} |"
            for r in self.epochs
        )
        return ("| epoch | train loss | train acc % | test loss | test acc % | lr | s |\n"
                "|---:|---:|---:|---:|---:|---:|---:|\n" + rows)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; nothing after it can be trusted."""

    def __init__(self, phase: str, epoch: int, step: int, value: float):
        self.phase, self.epoch, self.step, self.value = phase, epoch, step, value
        super().__init__(
            f"{phase} loss is {value} at epoch {epoch}, step {step}: training stopped and no accuracy is reported.\n"
            "Likely causes: a learning rate too high for this model, inputs that are not normalised, "
            "fp16 weights or reductions (use bf16 autocast, never model.half()), or a log(0) in a custom loss."
        )


@dataclass(frozen=True)
class Misclassified:
    """Test images the model got wrong, with what it said and what was right, and how to show them."""

    images: torch.Tensor  # normalised, as the model saw them (on the CPU)
    predicted: torch.Tensor
    target: torch.Tensor
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __len__(self) -> int:
        return len(self.target)
