"""A run's metrics, written in a machine-readable form next to the executed notebook."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from torch import nn

from kit.files import write_text
from kit.models import count_parameters
from kit.train import History


@dataclass(frozen=True)
class Budget:
    """What a step must achieve, declared once in its notebook: `budget = kit.Budget(...)`.

    "Consistently" means each of the last `consistent_epochs` epochs reaches the target.
    """

    max_parameters: int
    max_epochs: int
    target_test_acc: float  # percent
    consistent_epochs: int = 3

    def __post_init__(self):
        if self.max_parameters < 1 or self.max_epochs < 1 or not 0 < self.target_test_acc <= 100:
            raise ValueError(f"a Budget needs positive limits and a target in (0, 100]; got {self}")
        if not 1 <= self.consistent_epochs <= self.max_epochs:
            raise ValueError(f"consistent_epochs must lie in 1..max_epochs, got {self.consistent_epochs}")

    def misses(self, *, parameters: int | None = None, epochs: int | None = None,
               test_accs: list[float] | None = None) -> dict[str, str]:
        """What a run misses of this budget, by part ("parameters", "epochs", "consistency"); {} when met.

        Only the parts given are judged; `test_accs` is the test accuracy of every epoch.
        """
        misses = {}
        if parameters is not None and parameters > self.max_parameters:
            misses["parameters"] = f"{parameters:,} parameters, over the budget of {self.max_parameters:,}"
        if epochs is not None and epochs > self.max_epochs:
            misses["epochs"] = f"{epochs} epochs, over the budget of {self.max_epochs}"
        if test_accs is not None:
            last = test_accs[-self.consistent_epochs:]
            if len(last) < self.consistent_epochs or min(last) < self.target_test_acc:
                misses["consistency"] = (f"the last {self.consistent_epochs} test accuracies are "
                                         f"{', '.join(f'{a:.2f}' for a in last)}; each must reach {self.target_test_acc}%")
        return misses

    def verdict(self, history: History, parameters: int) -> list[str]:
        """What this run misses of the budget ([] when it is met), in words for an Analysis."""
        return list(self.misses(parameters=parameters, epochs=len(history),
                                test_accs=history.column("test_acc")).values())


def metrics(history: History, model: nn.Module, *, device: str, seed: int, seconds: float,
            budget: Budget | None = None, **extra) -> dict:
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
        "budget": asdict(budget) if budget else None,
        **extra,
        "history": history.to_dict()["epochs"],
    }


def save_metrics(path: str | os.PathLike | None, record: dict) -> None:
    """Write `record` as JSON atomically (nothing when `path` is empty)."""
    if path:
        write_text(path, json.dumps(record, indent=1))


def result(runs, *, budget: Budget | None, seed, quick: bool, path: str | os.PathLike | None = None,
           held_to_budget=None, headline: str | None = None, **extra) -> dict:
    """Record a notebook's run(s) and print what its Result cell may claim.

    `runs` is one Trainer, or a dict of them by name ("seed 2", "group norm") for
    a notebook that trains several; the `headline` one (default: the first) gives
    the record's top-level numbers, and the Result's first claims. Every run is
    held to `budget` unless `held_to_budget` names the ones that are. The metrics
    go to `path` as JSON (atomically), where `python -m kit check` compares them
    with the Result cell. Returns the record.
    """
    trainers = runs if isinstance(runs, dict) else {"": runs}
    if not trainers:
        raise ValueError("result() needs at least one trained Trainer")
    held = set(trainers) if held_to_budget is None else set(held_to_budget)
    if unknown := held - set(trainers):
        raise ValueError(f"held_to_budget names {sorted(unknown)}, but the runs are {sorted(trainers)}")
    records = {}
    for name, trainer in trainers.items():
        if not len(trainer.history):
            raise ValueError(f"run {name or 'the run'} has no epochs: call trainer.fit() first")
        h = trainer.history
        records[name] = metrics(h, trainer.model, device=str(trainer.device), seed=seed,
                                seconds=sum(h.column("seconds")), budget=budget if name in held else None,
                                data=getattr(trainer.train_loader, "name", None))
    if headline is not None and headline not in records:
        raise ValueError(f"headline {headline!r} is not one of the runs {sorted(records)}")
    first = records[headline] if headline is not None else next(iter(records.values()))
    record = {**first, "quick": quick, **extra}
    if len(records) > 1:
        record["runs"] = [{"name": name, **r} for name, r in records.items()]
    save_metrics(path, record)
    if quick:
        print("Smoke run (quick mode): these numbers only show that the notebook runs; they are not results.")
    for name, r in records.items():
        print(_summary(name, r, budget if name in held else None, quick))
    return record


def _summary(name: str, r: dict, budget: Budget | None, quick: bool) -> str:
    lines = [f"Parameters: {r['parameters']:,}",
             f"Best train accuracy: {r['best_train_acc']:.2f}% (epoch {r['best_train_epoch']})",
             f"Best test accuracy: {r['best_test_acc']:.2f}% (epoch {r['best_test_epoch']})",
             f"Last {len(r['last_test_acc'])} test accuracies: {', '.join(f'{a:.2f}' for a in r['last_test_acc'])}",
             f"{r['epochs']} epoch(s) in {r['seconds']:.0f} s on {r['device']}"]
    if budget is not None and not quick:
        misses = budget.misses(parameters=r["parameters"], epochs=r["epochs"],
                               test_accs=[e["test_acc"] for e in r["history"]])
        lines.append("Budget: met" if not misses else "Budget missed: " + "; ".join(misses.values()))
    if not name:
        return "\n".join(lines)
    return f"{name}\n" + "\n".join(f"  {line}" for line in lines)
