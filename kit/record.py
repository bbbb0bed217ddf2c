"""A notebook's record: what its runs did, in one versioned schema that `result`, `check` and `report` share.

A record holds, for every run a notebook trained, its per-epoch history and
what it was held to; everything a Result may claim (best accuracies and their
epochs, epochs used, the last K test accuracies, the budget's verdict) is
derived from that history (`Run.derived`), and `kit check` derives it again
rather than trusting a number written in the file. The record also says what
produced it (`Environment`): device, thread count, library versions, seeds.

`result(...)` writes the record and prints the Result in its canonical
Markdown form, which `kit check` reads back number by number.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kit.files import write_text
from kit.history import EpochRecord, History

SCHEMA = 2  # the record's version; a file of another version is refused with a message, never misread
# The version of what training computes. Bump it when a change to the kit changes the numbers a notebook's run
# gives (tests/test_fingerprints.py fails until it is bumped): every report made before is then stale.
NUMBERS = 1
KIT_SOURCE = Path(__file__).resolve().parent


# --- the budget ------------------------------------------------------------------------------

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

    @classmethod
    def from_dict(cls, d: dict, where: str = "budget") -> Budget:
        names = [f.name for f in fields(cls)]
        needed = {"max_parameters", "max_epochs", "target_test_acc"}
        if not isinstance(d, dict) or set(d) - set(names) or not needed <= set(d):
            raise ValueError(f"{where} must be an object with {', '.join(names)} "
                             f"(consistent_epochs may be left out); got {d!r}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

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


# --- what produced a run -------------------------------------------------------------------

def kit_hashes() -> dict[str, str]:
    """A short hash of every module under kit/, so a report can say which kit code it ran with."""
    return {p.relative_to(KIT_SOURCE).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in sorted(KIT_SOURCE.rglob("*.py"))}


@dataclass(frozen=True)
class Environment:
    device: str  # "cuda", "cpu", "mps"
    device_name: str  # "NVIDIA H200", or the CPU's model
    threads: int  # torch's intra-op CPU threads
    deterministic: bool  # cuDNN's deterministic algorithms on, its benchmark search off
    python: str
    torch: str
    torchvision: str
    cuda: str | None
    cudnn: int | None
    kit: str
    platform: str
    kit_code: dict = field(default_factory=dict)  # module -> hash of its source
    numbers: int = 1  # NUMBERS when the run was made
    # torch's CPU kernels ("AVX512", "AVX2"): two CPUs of one model name may run other kernels, and so differ in
    # their last bits; "" in records made before the kit recorded it
    cpu_kernels: str = ""

    @classmethod
    def here(cls, device) -> Environment:
        import torch
        import torchvision

        import kit

        device = torch.device(device)
        return cls(device=device.type, device_name=device_name(device), threads=torch.get_num_threads(),
                   deterministic=bool(torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark),
                   python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__,
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
                   kit=kit.__version__, platform=f"{platform.system()} {platform.machine()}", kit_code=kit_hashes(),
                   numbers=NUMBERS, cpu_kernels=torch.backends.cpu.get_cpu_capability())

    def describe(self) -> str:
        """One line for a report: the device, then every version a rerun must match (the CUDA torch was built for)."""
        cuda = f"CUDA {self.cuda}" if self.cuda else "no CUDA"
        cudnn = f", cuDNN {self.cudnn}" if self.cudnn else ""
        kernels = f", {self.cpu_kernels} kernels" if self.cpu_kernels and self.device == "cpu" else ""
        return (f"{self.device_name} ({self.device}), {self.threads} CPU thread{'s' * (self.threads != 1)}{kernels}; "
                f"torch {self.torch} ({cuda}{cudnn}), torchvision {self.torchvision}, Python {self.python}, kit {self.kit}")


def device_name(device) -> str:
    """The GPU's model, or the CPU's (e.g. 'NVIDIA H200', 'AMD EPYC 7B13')."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine() or "CPU"
    return device.type.upper()


# --- one run and the whole record ------------------------------------------------------------

@dataclass
class Run:
    """One trained model: what it was, what it was held to, and its per-epoch history."""

    name: str  # "" for a notebook's only run; else "seed 2", "group norm", "student + KD"
    parameters: int  # every parameter, trainable or frozen: the budget counts them all
    trainable_parameters: int
    history: History
    budget: Budget | None = None  # the budget this run is held to, if any
    seed: int | None = None
    data: str | None = None
    train_images: int = 0  # images per training epoch
    test_images: int = 0  # images per test
    seconds: float = 0.0  # training and testing time, the sum of the epochs'
    reported: bool = True  # False: a Trainer the notebook fitted but did not pass to result() (its epochs count too)
    settings: dict = field(default_factory=dict)  # optimiser, rates, schedule, callbacks, precision, batch sizes

    @property
    def epochs(self) -> int:
        return len(self.history)

    def derived(self, k: int | None = None) -> dict:
        """Every figure a Result may claim about this run, computed from its history."""
        k = k or (self.budget.consistent_epochs if self.budget else 3)
        best_train, best_train_epoch = self.history.best("train_acc")
        best_test, best_test_epoch = self.history.best("test_acc")
        out = {"epochs": self.epochs, "best_train_acc": best_train, "best_train_epoch": best_train_epoch,
               "best_test_acc": best_test, "best_test_epoch": best_test_epoch,
               "last_test_acc": self.history.last(k), "budget_misses": None}
        if self.budget is not None:
            out["budget_misses"] = self.budget.misses(parameters=self.parameters, epochs=self.epochs,
                                                      test_accs=self.history.column("test_acc"))
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "parameters": self.parameters, "trainable_parameters": self.trainable_parameters,
                "budget": asdict(self.budget) if self.budget else None, "seed": self.seed, "data": self.data,
                "train_images": self.train_images, "test_images": self.test_images, "seconds": self.seconds,
                "reported": self.reported, "settings": self.settings, "derived": self.derived(),
                "history": self.history.to_list()}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> Run:
        need = {"name", "parameters", "history"}
        if not isinstance(d, dict) or not need <= set(d):
            raise RecordError(f"{where} must be an object with at least {', '.join(sorted(need))}")
        history = d["history"]
        epoch_fields = [f.name for f in fields(EpochRecord)]
        if not isinstance(history, list) or not history or not all(
                isinstance(e, dict) and set(e) == set(epoch_fields) for e in history):
            raise RecordError(f"{where}: its history must be a non-empty list of epochs, each with exactly the "
                              f"fields {', '.join(epoch_fields)}")
        for i, e in enumerate(history, 1):
            losses_fine = all(_number(e[k]) or e[k] is None for k in ("train_loss", "test_loss"))  # sanity/* names a None
            if not _whole(e["epoch"]) or not losses_fine or not all(
                    _number(e[k]) for k in epoch_fields[1:] if not k.endswith("loss")):
                raise RecordError(f"{where}: epoch {i} of its history holds a value that is not a number: {e}")
        for key, check, what in (("name", lambda v: isinstance(v, str), "a string"),
                                 ("parameters", _whole, "a whole number"),
                                 ("trainable_parameters", _whole, "a whole number"),
                                 ("train_images", _whole, "a whole number"), ("test_images", _whole, "a whole number"),
                                 ("seconds", _number, "a number"),
                                 ("reported", lambda v: isinstance(v, bool), "true or false"),
                                 ("settings", lambda v: isinstance(v, dict), "an object")):
            if key in d and not check(d[key]):
                raise RecordError(f"{where}: {key} must be {what}, not {d[key]!r}")
        for key, check, what in SETTINGS_TYPES:
            if key in d.get("settings", {}) and not check(d["settings"][key]):
                raise RecordError(f"{where}: settings.{key} must be {what}, not {d['settings'][key]!r}")
        try:
            budget = Budget.from_dict(d["budget"], f"{where}: budget") if d.get("budget") else None
        except (TypeError, ValueError) as e:
            raise RecordError(str(e)) from None
        return cls(name=d["name"], parameters=d["parameters"],
                   trainable_parameters=d.get("trainable_parameters", d["parameters"]),
                   history=History.from_list(history), budget=budget, seed=d.get("seed"), data=d.get("data"),
                   train_images=d.get("train_images", 0), test_images=d.get("test_images", 0),
                   seconds=d.get("seconds", 0.0), reported=d.get("reported", True), settings=d.get("settings", {}))


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # NaN and inf included: sanity/* names them


def _pairs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, list) and len(x) == 2 for x in v)


SETTINGS_TYPES = (  # the settings the checker computes with
    ("model_id", _whole, "a whole number"),
    ("model_ids", lambda v: isinstance(v, list) and all(map(_whole, v)), "a list of whole numbers"),
    ("model_epochs", _whole, "a whole number"),
    ("fit_order", lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    ("layer_parameters", lambda v: isinstance(v, dict) and all(map(_whole, v.values())), "an object of counts"),
    ("callbacks", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of strings"),
    ("architecture", lambda v: isinstance(v, str), "a string"),
    ("augment", lambda v: isinstance(v, str), "a string"),
    ("printed_name", lambda v: isinstance(v, str), "a string"),
    ("trained_on", _pairs, "a list of [made for training, images] pairs"),
    ("tested_on", _pairs, "a list of [made for training, images] pairs"),
)


class RecordError(ValueError):
    """A metrics file that is not a record of this schema."""


@dataclass
class Record:
    """Everything a notebook's runs did, as written to NAME.metrics.json."""

    runs: list[Run]
    quick: bool
    environment: Environment | None = None
    headline: str = ""  # the run whose numbers the Result gives first
    kit_changed: list[str] = field(default_factory=list)  # what of the kit the notebook changed (kit.integrity)
    schema: int = SCHEMA

    def run(self, name: str) -> Run:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def head(self) -> Run:
        return self.run(self.headline) if self.headline else self.runs[0]

    @property
    def reported(self) -> list[Run]:
        return [r for r in self.runs if r.reported]

    def to_dict(self) -> dict:
        return {"schema": self.schema, "quick": self.quick, "headline": self.headline,
                "environment": asdict(self.environment) if self.environment else None,
                "kit_changed": self.kit_changed, "runs": [r.to_dict() for r in self.runs]}

    def save(self, path: str | os.PathLike) -> None:
        write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d, where: str = "the record") -> Record:
        if not isinstance(d, dict):
            raise RecordError(f"{where} must be a JSON object (a kit record), not {type(d).__name__}")
        if d.get("schema") != SCHEMA:
            raise RecordError(f"{where} is of record schema {d.get('schema')!r}; this kit reads schema {SCHEMA}: "
                              "run the notebook again with `python -m kit run`")
        if not isinstance(d.get("runs"), list) or not d["runs"]:
            raise RecordError(f"{where} has no runs")
        env = d.get("environment")
        try:
            environment = Environment(**env) if env else None
        except TypeError as e:
            raise RecordError(f"{where}: its environment does not match the schema ({e})") from None
        runs = [Run.from_dict(r, f"{where}, run {i}") for i, r in enumerate(d["runs"])]
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise RecordError(f"{where}: two runs share a name ({sorted(n for n in set(names) if names.count(n) > 1)})")
        if d.get("headline", "") not in ("", *names):
            raise RecordError(f"{where}: its headline {d.get('headline')!r} is not one of its runs {names}")
        changed = d.get("kit_changed", [])  # absent in records made before the kit looked
        if not isinstance(changed, list) or not all(isinstance(n, str) for n in changed):
            raise RecordError(f"{where}: kit_changed must be a list of names, got {changed!r}")
        return cls(runs=runs, quick=bool(d.get("quick")), environment=environment, headline=d.get("headline", ""),
                   kit_changed=changed)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Record:
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise RecordError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(d, str(path))


# --- recording a notebook's runs -------------------------------------------------------------

def _fit_order(trainer) -> int:
    from kit.train import Trainer

    return next((i for i, t in enumerate(Trainer._fitted) if t is trainer), -1)


def run_of(trainer, name: str = "", budget: Budget | None = None, reported: bool = True) -> Run:
    """A Run from a fitted Trainer."""
    from kit.models import count_parameters
    from kit.train import loader_images

    h = trainer.history
    if not len(h):
        raise ValueError(f"run {name or 'the run'} has no epochs: call trainer.fit() first")
    train, test = trainer.train_loader, trainer.test_loader

    settings = {
        "optimizer": type(trainer.optimizer).__name__, "lr": trainer.lr,
        "momentum": trainer.optimizer.defaults.get("momentum"),
        "weight_decay": trainer.optimizer.defaults.get("weight_decay"),
        "label_smoothing": trainer.label_smoothing, "callbacks": [repr(c) for c in trainer.callbacks],
        "batch_size": getattr(train, "batch_size", None) or getattr(getattr(train, "loader", None), "batch_size", None),
        "augment": repr(getattr(train, "augment", None)), "data_path": type(train).__name__,
        "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else None,
        "channels_last": trainer.channels_last, "graph": trainer.graph, "compile": trainer.compiled,
        "device": str(trainer.device),
        # how the checker finds this run's evidence: the name its epoch lines carry, the order it was fitted in,
        # and the modules it trained (a warm-up trainer of the same model counts toward its epochs)
        "printed_name": trainer.name, "fit_order": _fit_order(trainer),
        "model_id": id(trainer.model), "model_ids": sorted({id(m) for m in trainer.model.modules()}),
        # what the model is, for the figures an Analysis may give of it (channels, a layer's parameters)
        "architecture": repr(trainer.model),
        "layer_parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in trainer.model.named_modules() if n},
        # what training did whatever changed after it: the epochs its modules were trained for by any Trainer,
        # and the loaders trained and tested on (made for training?, images)
        "model_epochs": trainer.model_epochs(),
        "trained_on": sorted(map(list, trainer.loaders_used["train"]), key=str),
        "tested_on": sorted(map(list, trainer.loaders_used["test"]), key=str),
    }
    parameters = max(count_parameters(trainer.model, trainable_only=False), trainer.parameters_trained)
    return Run(name=name, parameters=parameters,
               trainable_parameters=count_parameters(trainer.model), history=h, budget=budget,
               seed=getattr(train, "seed", None), data=getattr(train, "name", None), train_images=loader_images(train),
               test_images=loader_images(test), seconds=sum(h.column("seconds")), reported=reported, settings=settings)


def result(runs, *, budget: Budget | None, quick: bool = False, path: str | os.PathLike | None = None,
           held_to_budget=None, headline: str | None = None, environment: Environment | None = None) -> Record:
    """Record a notebook's run(s) and print its Result in the canonical form `kit check` reads.

    `runs` is one Trainer, or a dict of them by name ("seed 2", "group norm") for a
    notebook that trains several; the `headline` one (default: the first) is given
    first. Every run is held to `budget` unless `held_to_budget` names the ones that
    are. Trainers fitted in this process but not passed here are recorded too, as
    unreported runs: their epochs count. The record goes to `path` as JSON
    (atomically). Returns the record.
    """
    from kit import integrity
    from kit.train import Trainer

    trainers = runs if isinstance(runs, dict) else {"": runs}
    if not trainers:
        raise ValueError("result() needs at least one trained Trainer")
    held = set(trainers) if held_to_budget is None else set(held_to_budget)
    if unknown := held - set(trainers):
        raise ValueError(f"held_to_budget names {sorted(unknown)}, but the runs are {sorted(trainers)}")
    if headline is not None and headline not in trainers:
        raise ValueError(f"headline {headline!r} is not one of the runs {sorted(trainers)}")
    recorded = [run_of(t, name, budget if name in held else None) for name, t in trainers.items()]
    ours = {id(t) for t in trainers.values()}
    others = [t for t in Trainer.fitted() if id(t) not in ours]
    recorded += [run_of(t, f"unreported trainer {i}", reported=False) for i, t in enumerate(others, 1)]
    if environment is None:
        first = next(iter(trainers.values()))
        environment = Environment.here(first.device)
    record = Record(runs=recorded, quick=quick, environment=environment, headline=headline or "",
                    kit_changed=integrity.changed())
    if path:
        record.save(path)
    print(markdown(record), flush=True)
    return record


def _pct(v: float) -> str:
    return f"{v:.2f}%"


SEED_SUFFIX = " · seed "  # runs named "student · seed 2" are grouped over their seeds


def run_lines(run: Run, quick: bool) -> list[str]:
    """The canonical claims about a notebook's only run, one per line, as `kit check` reads them."""
    d = run.derived()
    lines = [f"Parameters: {run.parameters:,}",
             f"Best train accuracy: {_pct(d['best_train_acc'])} (epoch {d['best_train_epoch']})",
             f"Best test accuracy: {_pct(d['best_test_acc'])} (epoch {d['best_test_epoch']})",
             f"Last {len(d['last_test_acc'])} test accurac{'y' if len(d['last_test_acc']) == 1 else 'ies'}: "
             + ", ".join(f"{a:.2f}" for a in d["last_test_acc"])]
    if run.budget is not None and not quick:
        lines.append(f"Budget: {verdict(d['budget_misses'])}")
    return lines


def verdict(misses: dict | None) -> str:
    """The budget's verdict as a fixed phrase: 'met', 'missed (...)', or '—' for a run not held to it."""
    if misses is None:
        return "—"
    return "met" if not misses else "missed (" + "; ".join(misses.values()) + ")"


def run_row(run: Run, quick: bool, k: int) -> str:
    d = run.derived(k)
    return (f"| {run.name} | {run.parameters:,} | {_pct(d['best_train_acc'])} (epoch {d['best_train_epoch']}) | "
            f"{_pct(d['best_test_acc'])} (epoch {d['best_test_epoch']}) | "
            f"{', '.join(f'{a:.2f}' for a in d['last_test_acc'])} | {'—' if quick else verdict(d['budget_misses'])} |")


def seed_groups(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs named 'NAME · seed N', grouped by NAME (only groups of two or more)."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if SEED_SUFFIX in r.name:
            groups.setdefault(r.name.rsplit(SEED_SUFFIX, 1)[0], []).append(r)
    return {name: rs for name, rs in groups.items() if len(rs) > 1}


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return m, sd


def markdown(record: Record) -> str:
    """The Result as Markdown: what `result()` prints and a Result cell may show as it is.

    One run: a list of claims. Several: a table with a row per run and, where runs repeat
    over seeds ('NAME · seed N'), a table of their means and spreads.
    """
    env = record.environment
    where = f" on {env.device_name}" if env else ""
    out = []
    if record.quick:
        out.append("Smoke run (quick mode): these numbers only show that the notebook runs; they are not results.")
    reported = record.reported
    if len(reported) == 1 and not reported[0].name:
        r = reported[0]
        out += [f"- {line}" for line in run_lines(r, record.quick)]
        out.append(f"- {r.epochs} epoch{'s' * (r.epochs != 1)} in {r.seconds:.0f} s{where}")
    else:
        order = sorted(reported, key=lambda r: r.name != record.headline) if record.headline else reported
        k = next((r.budget.consistent_epochs for r in reported if r.budget), 3)
        out += [f"| run | parameters | best train accuracy | best test accuracy | last {k} test "
                f"accurac{'y' if k == 1 else 'ies'} | budget |", "|---|---:|---:|---:|---|---|"]
        out += [run_row(r, record.quick, k) for r in order]
        epochs = sorted({r.epochs for r in reported})
        seconds = [r.seconds for r in reported]
        out.append("")
        out.append(f"{len(reported)} runs of {'/'.join(map(str, epochs))} epoch{'s' * (epochs != [1])}, "
                   f"{min(seconds):.0f} to "
                   f"{max(seconds):.0f} s each{where}.")
        groups = seed_groups(reported)
        if groups:
            seeds = sorted({r.seed for rs in groups.values() for r in rs if r.seed is not None})
            out += ["", f"Over seeds {', '.join(map(str, seeds))} (mean ± standard deviation):", "",
                    "| run | best test accuracy | last test accuracy |", "|---|---:|---:|"]
            for name, rs in groups.items():
                best = mean_spread([r.derived()["best_test_acc"] for r in rs])
                last = mean_spread([r.history[-1].test_acc for r in rs])
                out.append(f"| {name} | {best[0]:.2f} ± {best[1]:.2f}% | {last[0]:.2f} ± {last[1]:.2f}% |")
    for r in record.runs:
        if not r.reported:
            out.append(f"- {r.name}: {r.epochs} epoch{'s' * (r.epochs != 1)}, {r.parameters:,} parameters "
                       "(fitted but not passed to result(); it counts toward the epochs)")
    return "\n".join(out)


TIMING = re.compile(r"^(?:- )?[\d,]+ (?:runs of [\d/]+ )?epochs?\b")  # '- 15 epochs in 232 s on AMD EPYC'
VERDICT_LINE = re.compile(r"^- Budget: (?:met|missed \(.*\))$")


def _shape(line: str) -> str:
    """A printed Result's line with what a rerun changes masked (numbers; a table row's cells but its run; the
    budget's verdict; the device's name), and every word an author could add kept: a line of this shape was
    printed by the kit, not written by hand."""
    line = line.rstrip()
    if line.startswith("|"):
        cells = line.strip("|").split("|")
        return f"|{re.sub(r'[0-9]+', '#', cells[0].strip())}|{len(cells)}"
    if VERDICT_LINE.match(line):
        return "- Budget:"
    if TIMING.match(line):
        line = re.sub(r"\s+on\s+(?:(?!\.\s)[^—;!?])*$", " on", line)  # the device's name, to the end of the line
    return re.sub(r"[0-9][0-9,.]*", "#", line)


def result_blocks(cell: str, block: str) -> list[int]:
    """Where in the Result cell `cell` (its lines) a block of the shape of `block` starts, outside HTML comments."""
    lines, new = cell.splitlines(), block.strip("\n").splitlines()
    starts = [0]  # each line's first character in the cell
    for line in cell.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    hidden = set()  # the lines an HTML comment covers, in part or whole (one never closed runs to the end)
    for m in re.finditer(r"<!--.*?(?:-->|$)", cell, re.S):
        hidden |= {i for i in range(len(lines)) if starts[i] < m.end() and m.start() < starts[i + 1]}
    want = [_shape(line) for line in new]
    return [i for i in range(len(lines) - len(new) + 1)
            if not hidden & set(range(i, i + len(new))) and [_shape(x) for x in lines[i:i + len(new)]] == want]


def replace_result(cell: str, block: str) -> str:
    """The Result cell with the block a run printed (`markdown(record)`) in place of the only block of its shape
    (see result_blocks; a cell with none or several is a ValueError)."""
    at = result_blocks(cell, block)
    if len(at) != 1:
        raise ValueError(f"the Result holds {len(at)} blocks of the shape the run printed, not one")
    newline = "\r\n" if "\r\n" in cell else "\n"
    lines, new = cell.splitlines(), block.strip("\n").splitlines()
    return newline.join(lines[:at[0]] + new + lines[at[0] + len(new):]) + (newline if cell.endswith(("\n", "\r")) else "")
