"""Training and testing: the Trainer, its History, and the helpers around them.

The Trainer refuses to report an accuracy from a broken run: a NaN or inf loss
stops it at once with an error naming the epoch and step. (One of the course
reports shows a NaN loss next to "100% test accuracy"; here that cannot happen.)
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit.files import write_text

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("step", "onecycle", "plateau")


# --- seeds and devices ---------------------------------------------------------------

def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; with `deterministic`, also insist on deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; a named device that is missing is an error."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was asked for, but this machine has no MPS; use 'auto' or 'cpu'")
    return device


# --- history -------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # from 1, as the course counts them
    train_loss: float
    train_acc: float  # percent
    test_loss: float
    test_acc: float  # percent
    lr: float  # at the end of the epoch
    seconds: float  # training and testing time of this epoch


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

    def to_dict(self) -> dict:
        return {"epochs": [asdict(r) for r in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls([EpochRecord(**r) for r in d["epochs"]])

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically: a reader sees the old file or the new one, never half."""
        write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def _repr_markdown_(self) -> str:
        rows = "\n".join(
            f"| {r.epoch} | {r.train_loss:.4f} | {r.train_acc:.2f} | {r.test_loss:.4f} | {r.test_acc:.2f} | {r.lr:.3g} | {r.seconds:.1f} |"
            for r in self.epochs
        )
        return ("| epoch | train loss | train acc % | test loss | test acc % | lr | s |\n"
                "|---:|---:|---:|---:|---:|---:|---:|\n" + rows)


# --- errors and small pieces ----------------------------------------------------------

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
    """Test images the model got wrong, with what it said and what was right."""

    images: torch.Tensor  # normalised, as the model saw them (on the CPU)
    predicted: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return len(self.target)


def _progress(iterable, total: int, desc: str, enabled: bool | None):
    if enabled is None:
        enabled = _interactive()
    if not enabled or os.environ.get("TQDM_DISABLE"):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, mininterval=0.5)


def _interactive() -> bool:
    """True in a live Jupyter kernel or at a terminal; False in logs and pipes."""
    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return True
    except ImportError:
        pass
    return sys.stderr.isatty()


def _fp32_norms(model: nn.Module) -> list:
    """Run every normalisation layer in fp32 under autocast (its statistics need the range)."""
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    hook = lambda module, args: tuple(a.float() if torch.is_tensor(a) else a for a in args)  # noqa: E731
    return [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, norms)]


# --- knowledge distillation -------------------------------------------------------------

@dataclass
class Distillation:
    """Teach a student with a trained teacher's softened scores as well as the labels.

    loss = alpha * T^2 * KL(teacher's softmax(z/T) || student's softmax(z/T)) + (1 - alpha) * cross-entropy.
    The T^2 keeps the soft part's gradients the same size whatever the temperature
    (Hinton et al., 2015). The teacher only predicts: eval mode, no gradients.
    """

    teacher: nn.Module
    temperature: float = 4.0
    alpha: float = 0.7

    def __post_init__(self):
        if self.temperature <= 0 or not 0 <= self.alpha <= 1:
            raise ValueError(f"Distillation needs temperature > 0 and alpha in [0, 1]; got "
                             f"temperature={self.temperature}, alpha={self.alpha}")
        self.teacher.eval()  # predicts only (its loss is computed under no_grad); the optimiser never sees it

    def loss(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(x).float()
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                        reduction="batchmean", log_target=True) * t * t
        hard = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        return self.alpha * soft + (1 - self.alpha) * hard


# --- the trainer ---------------------------------------------------------------------

class Trainer:
    """Train a model on one loader and test it on another, epoch by epoch.

    Loaders are anything that yields (images, labels) batches and has a length:
    the kit's DeviceLoader and ClassicLoader both qualify.
    """

    def __init__(self, model: nn.Module, train_loader, test_loader, *, epochs: int = 15,
                 optimizer: str | torch.optim.Optimizer = "sgd", lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, l1: float = 0.0, scheduler: str | None = None,
                 scheduler_args: dict | None = None, label_smoothing: float = 0.0,
                 ema_decay: float | None = None, amp: bool | None = None, distillation: Distillation | None = None,
                 device: str | torch.device = "auto", progress: bool | None = None, verbose: bool = True):
        self.device = pick_device(device)
        self.model = model.to(self.device)
        self.train_loader, self.test_loader = train_loader, test_loader
        self.epochs = epochs
        self.l1, self.label_smoothing = l1, label_smoothing
        self.progress, self.verbose = progress, verbose
        self.optimizer = self._optimizer(optimizer, lr, momentum, weight_decay)
        self.scheduler_name = scheduler
        self.scheduler = self._scheduler(scheduler, dict(scheduler_args or {}))
        self.ema = None
        if ema_decay is not None:
            if not 0 < ema_decay < 1:
                raise ValueError(f"ema_decay must lie in (0, 1), e.g. 0.999; got {ema_decay}")
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.distillation = distillation
        if distillation is not None:
            distillation.teacher.to(self.device)
        self.amp_dtype = self._amp(amp)
        if self.amp_dtype is not None:
            _fp32_norms(self.model)
            if distillation is not None:
                _fp32_norms(distillation.teacher)
        self.history = History()

    # --- construction ---
    def _optimizer(self, optimizer, lr, momentum, weight_decay):
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        params = self.model.parameters()
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        if optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS} or pass a torch optimizer")

    def _scheduler(self, name, args):
        opt = self.optimizer
        if name is None:
            return None
        if name == "step":
            return torch.optim.lr_scheduler.StepLR(opt, **{"step_size": 5, "gamma": 0.1, **args})
        if name == "onecycle":
            max_lr = args.pop("max_lr", opt.param_groups[0]["lr"])
            return torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=max_lr, epochs=self.epochs, steps_per_epoch=len(self.train_loader), **args)
        if name == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **{"factor": 0.1, "patience": 2, **args})
        raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS} or None")

    def _amp(self, amp):
        """bf16 autocast on a GPU that has it; never fp16, whose reductions overflow to NaN."""
        if amp is False or (amp is None and self.device.type != "cuda"):
            return None
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if amp:
            print(f"mixed precision: bf16 is not supported on {self.device}; training in fp32", file=sys.stderr)
        return None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    # --- loops ---
    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training data; returns (mean loss, accuracy %)."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        batches = _progress(self.train_loader, len(self.train_loader), f"epoch {epoch} train", self.progress)
        for step, (x, y) in enumerate(batches, 1):
            with self._autocast():
                logits = self.model(x).float()  # the loss is always computed in fp32
                if self.distillation is not None:
                    loss = self.distillation.loss(logits, x, y, self.label_smoothing)
                else:
                    loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                if self.l1:
                    loss = loss + self.l1 * sum(p.abs().sum() for p in self.model.parameters() if p.dim() > 1)
            if not torch.isfinite(loss):
                raise NonFiniteLossError("training", epoch, step, loss.item())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if self.scheduler_name == "onecycle":
                self.scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if hasattr(batches, "set_postfix") and step % 20 == 0:
                batches.set_postfix(loss=f"{loss.item():.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        return loss_sum.item() / seen, 100 * correct.item() / seen

    @torch.no_grad()
    def test_epoch(self, epoch: int = 0, loader=None) -> tuple[float, float]:
        """Evaluate (the EMA weights, when kept); returns (mean loss, accuracy %)."""
        model = self.eval_model
        model.eval()
        loader = loader or self.test_loader
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for x, y in _progress(loader, len(loader), f"epoch {epoch} test", self.progress):
            with self._autocast():
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        if seen == 0:
            raise ValueError("the test loader yielded no batches")
        loss = loss_sum.item() / seen
        if not np.isfinite(loss):
            raise NonFiniteLossError("test", epoch, len(loader), loss)
        return loss, 100 * correct.item() / seen

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def fit(self, epochs: int | None = None) -> History:
        """Train for `epochs` more epochs (default: the number given at construction)."""
        for _ in range(epochs or self.epochs):
            epoch = len(self.history) + 1
            start = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch)
            test_loss, test_acc = self.test_epoch(epoch)
            if self.scheduler_name == "step":
                self.scheduler.step()
            elif self.scheduler_name == "plateau":
                self.scheduler.step(test_loss)
            record = EpochRecord(epoch, train_loss, train_acc, test_loss, test_acc,
                                 self.optimizer.param_groups[0]["lr"], time.perf_counter() - start)
            self.history.append(record)
            if self.verbose:
                print(self._line(record), flush=True)
        return self.history

    def _line(self, r: EpochRecord) -> str:
        return (f"epoch {r.epoch:>2}  train loss {r.train_loss:.4f} acc {r.train_acc:6.2f}%  "
                f"test loss {r.test_loss:.4f} acc {r.test_acc:6.2f}%  lr {r.lr:.3g}  {r.seconds:.1f}s")

    @torch.no_grad()
    def misclassified(self, loader=None, limit: int = 25) -> Misclassified:
        """Collect up to `limit` test images that the model gets wrong."""
        model = self.eval_model
        model.eval()
        images, predicted, target = [], [], []
        found = 0
        for x, y in loader or self.test_loader:
            with self._autocast():
                pred = model(x).float().argmax(1)
            wrong = pred != y
            images.append(x[wrong].float().cpu())
            predicted.append(pred[wrong].cpu())
            target.append(y[wrong].cpu())
            found += int(wrong.sum())
            if found >= limit:
                break
        cat = lambda parts: torch.cat(parts)[:limit] if parts else torch.zeros(0)  # noqa: E731
        return Misclassified(cat(images), cat(predicted), cat(target))
