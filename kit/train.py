"""Training and testing: the Trainer and its one small step.

The loop, labelled as the course draws it: for each batch, forward, loss,
backward, update, track. What a lesson adds (a learning-rate schedule, EMA,
L1, distillation) plugs in as a callback (kit.callbacks), so the step never
grows an if-chain.

A tiny model on a GPU is bound by kernel launches and host syncs, not by
arithmetic. So the step never waits for the device: the running sums and the
NaN guard stay on the device and the host looks at them every CHECK_EVERY steps
and at the end of each epoch. A NaN or inf loss still stops training with an
error naming its epoch and step, and no accuracy is reported from a broken run.
On CUDA the whole step (forward, backward, update, tracking) is captured once
as a CUDA graph and replayed: one launch a step instead of hundreds.
"""
from __future__ import annotations

import logging
import os
import random
import sys
import time
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kit import integrity
from kit.callbacks import Callback
from kit.history import EpochRecord, History, Misclassified, NonFiniteLossError, epoch_line
from kit.optim import GraphAdam, GraphSGD, hold_on_device, keep_on_device

OPTIMIZERS = ("sgd", "adam")
CHECK_EVERY = 50  # steps between the host's looks at the device-side sums and NaN flag
WARMUP_STEPS = 3  # eager steps before a CUDA graph is captured (cuDNN and the allocator settle)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


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


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks cuda, then mps, then cpu; a named device that is missing is an error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but this machine has no MPS; use 'auto' or 'cpu'")
    return device


def default_channels_last(device: torch.device) -> bool:
    """The memory format that measured faster for the solution's step-4 model (`kit bench`, 15 epochs on the
    2-core AMD EPYC): channels_last on CUDA; on a CPU NCHW (2 threads: 87 s against 148 s), except on one
    thread, as `kit run` trains, where channels_last was faster (139 s against 151 s) and keeps the reports'
    numbers."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.get_num_threads() == 1


def same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 are the same device."""
    index = lambda d: d.index if d.index is not None else (torch.cuda.current_device() if d.type == "cuda" else 0)  # noqa: E731
    return a.type == b.type and index(a) == index(b)


# --- small pieces ------------------------------------------------------------------------

def _progress(iterable, total: int, desc: str, enabled: bool | None):
    if enabled is None:
        enabled = _interactive()
    if not enabled or os.environ.get("TQDM_DISABLE"):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, mininterval=0.5)


def loader_images(loader) -> int:
    """How many images a loader (the kit's device or classic one) goes through in an epoch."""
    return len(getattr(loader, "labels", ())) or len(getattr(getattr(loader, "loader", None), "dataset", ()))


def _loader_words(loader) -> tuple:
    """(made for training: True/False/None where unknown, images) of a loader, for the record."""
    return getattr(loader, "train", None), loader_images(loader)


def _interactive() -> bool:
    """True in a live Jupyter kernel or at a terminal; False in logs and pipes."""
    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return True
    except ImportError:
        pass
    return sys.stderr.isatty()


def _fp32_norms(model: nn.Module) -> None:
    """Run every normalisation layer in fp32 under autocast (its statistics need the range); once per module."""
    hook = lambda module, args: tuple(a.float() if torch.is_tensor(a) else a for a in args)  # noqa: E731
    for m in model.modules():
        if isinstance(m, NORMS) and not getattr(m, "_kit_fp32", False):
            m.register_forward_pre_hook(hook)
            m._kit_fp32 = True


# --- the trainer ---------------------------------------------------------------------

class Trainer:
    """Train a model on one loader and test it on another, epoch by epoch.

    Loaders are anything that yields (images, labels) batches and has a length: the
    kit's DeviceLoader and ClassicLoader both qualify. The model goes where the loaders
    put their batches (their `.device`), unless `device` says otherwise.

    Speed settings, each defaulting to what measured faster on that kind of device
    (`python -m kit bench`): `amp` (bf16 autocast with the norms in fp32, CUDA),
    `channels_last` (memory format of model and input: `default_channels_last`), `graph` (capture the step as a
    CUDA graph, CUDA only) and `compile` (torch.compile of the model; off by default: over a 15-epoch run,
    its one-time cost included, it paid on one CPU and not on another, nor on an H200). On CUDA, `compile=True`
    alone compiles in torch's CUDA-graph mode, which graphs the model's forward and backward; `compile=True,
    graph=True` compiles for fused kernels only and captures the whole step (update and running sums too) in the
    trainer's own graph.
    """

    # the trainers fitted in this process, oldest first; held (not weakly) until kit.setup forgets them, so a
    # Trainer no variable keeps, a warm-up say, is still recorded and its epochs still count
    _fitted: list = []
    # epochs each module has been trained for in this process, by any Trainer, in fit() or not: a run's budget
    # counts them all (a warm-up, a history set back, an epoch trained by hand), and kit.setup forgets none
    _module_epochs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def fitted(cls) -> list[Trainer]:
        """The trainers fitted since the last `forget_fitted()` (kit.setup calls it)."""
        return [t for t in cls._fitted if len(t.history)]

    @classmethod
    def forget_fitted(cls) -> None:
        cls._fitted.clear()

    @property
    def model(self) -> nn.Module:
        """The model this Trainer trains (its optimizer holds its parameters)."""
        return self._model

    @model.setter
    def model(self, other) -> None:
        raise AttributeError("a Trainer trains the model it was built with; build a new Trainer for another model "
                             "(kit.Trainer(model, train_loader, test_loader, ...))")

    def __init__(self, model: nn.Module, train_loader, test_loader, *, epochs: int = 15,
                 optimizer: str | torch.optim.Optimizer = "sgd", lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, label_smoothing: float = 0.0, scheduler: Callback | None = None,
                 callbacks: list[Callback] | tuple = (), name: str = "", device: str | torch.device | None = None,
                 amp: bool | None = None, channels_last: bool | None = None, graph: bool | None = None,
                 compile: bool = False, progress: bool | None = None, verbose: bool = True):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a whole number of at least 1, got {epochs!r}")
        if lr <= 0:
            raise ValueError(f"the learning rate must be positive, got lr={lr}")
        self.device = self._device(device, train_loader, test_loader)
        self.train_loader, self.test_loader = train_loader, test_loader
        self.loaders_used: dict[str, set] = {"train": set(), "test": set()}  # (made for training?, images) of each
        self.parameters_trained = 0  # the most parameters (the model's and the optimizer's) an epoch trained
        self.epochs, self.lr, self.label_smoothing, self.name = epochs, lr, label_smoothing, name
        self.progress, self.verbose = progress, verbose
        self.amp_dtype = self._amp(amp)
        self.channels_last = default_channels_last(self.device) if channels_last is None else channels_last
        self.graph = self._graph(graph, compile, optimizer)
        self._model = self.prepare(model)
        if compile and self.device.type != "cuda":
            # inductor's CPU path looks for a CUDA toolkit too, and where a toolkit folder sits on a machine without
            # a GPU it logs "No CUDA runtime is found": nothing a CPU run needs to hear
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        # the trainer's own graph captures the compiled kernels: torch's CUDA-graph mode would nest a second graph
        mode = "reduce-overhead" if self.device.type == "cuda" and not self.graph else "default"
        self._forward = torch.compile(model, mode=mode) if compile else model
        self.compiled = compile
        self.optimizer = self._optimizer(optimizer, lr, momentum, weight_decay)
        self._held = hold_on_device(self.optimizer, self.device) if self.graph else {}
        self.callbacks = [c for c in (scheduler, *callbacks) if c is not None]
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"{c!r} is not a kit callback (kit.OneCycle, kit.StepLR, kit.EMA, kit.L1, "
                                "kit.Distillation, or a subclass of kit.callbacks.Callback)")
            c.begin(self)
        self._keep_on_device()  # a scheduler sets its first rate (and momentum) as numbers
        # step, first bad step (-1: none), its loss, loss sum, correct: kept on the device, read every CHECK_EVERY steps
        self._sums = torch.zeros(5, dtype=self._float, device=self.device)
        self._captured = self._static = self._compiled_shape = None
        self._warmup = WARMUP_STEPS
        self._checked = False  # the first batch of each fit is looked at once
        self.history = History()

    # --- construction ---
    @staticmethod
    def _device(device, train_loader, test_loader) -> torch.device:
        where = {name: getattr(loader, "device", None) for name, loader in (("train", train_loader), ("test", test_loader))}
        if device is None:
            device = where["train"] or where["test"] or "auto"
        device = pick_device(device)
        for name, d in where.items():
            if d is not None and not same_device(torch.device(d), device):
                raise ValueError(f"the {name} loader puts its batches on {d}, but the model would train on {device}; "
                                 f"build both loaders and the Trainer for one device (make_loaders(device=...)), "
                                 "or leave all of them on 'auto'")
        return device

    def prepare(self, module: nn.Module) -> nn.Module:
        """Put a module (the model, a teacher) on this trainer's device, memory format and precision."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.amp_dtype is not None:
            _fp32_norms(module)
        return module

    def _amp(self, amp):
        """bf16 autocast on a GPU that has it; never fp16, whose reductions overflow to NaN."""
        if amp is False or (amp is None and self.device.type != "cuda"):
            return None
        # bf16 in hardware from Ampere (compute capability 8.0) on; older GPUs (Colab's T4) only emulate it
        if self.device.type == "cuda" and torch.cuda.get_device_capability(self.device) >= (8, 0):
            return torch.bfloat16
        if amp:
            print(f"mixed precision: bf16 is not supported on {self.device}; training in fp32", file=sys.stderr)
        return None

    def _graph(self, graph, compile, optimizer) -> bool:
        ours = isinstance(optimizer, str)
        if graph is None:  # KIT_GRAPH=0 turns the default off, for a model that cannot be captured
            return self.device.type == "cuda" and not compile and ours and os.environ.get("KIT_GRAPH") != "0"
        if graph and self.device.type != "cuda":
            raise ValueError(f"graph=True captures the step as a CUDA graph; this trainer runs on {self.device}")
        if graph and not ours:
            raise ValueError("graph=True needs the trainer's own optimizer ('sgd' or 'adam')")
        return bool(graph)

    def _optimizer(self, optimizer, lr, momentum, weight_decay):
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        params = self.model.parameters()
        # A captured graph reads the rate, the momentum and Adam's betas from device tensors (kit.optim)
        if optimizer == "sgd":
            return (GraphSGD if self.graph else torch.optim.SGD)(params, lr=lr, momentum=momentum,
                                                                 weight_decay=weight_decay)
        if optimizer == "adam":
            return (GraphAdam if self.graph else torch.optim.Adam)(params, lr=lr, weight_decay=weight_decay)
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS} or pass a torch optimizer")

    def autocast(self):
        # A captured graph must not rely on autocast's cache of cast weights.
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None, cache_enabled=not self.graph)

    @property
    def eval_model(self) -> nn.Module:
        """The model that is tested: the EMA's average where an EMA callback keeps one."""
        for c in self.callbacks:
            if hasattr(c, "eval_model"):
                return c.eval_model
        return self.model

    @property
    def _float(self) -> torch.dtype:
        """The running sums' type: float64 (exact counts), except on MPS, which has none."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # --- the step ---
    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step on the device, with no host sync (so it can be captured as a CUDA graph)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compiled and self.device.type == "cuda" and not self.graph:
            torch.compiler.cudagraph_mark_step_begin()  # a new training step: the last one's outputs may be reused
        # forward
        with self.autocast():
            logits = self._forward(x).float()  # the loss is always computed in fp32
        # loss
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        for c in self.callbacks:
            loss = c.loss(self, loss, logits, x, y)
        # backward, update
        loss.backward()
        self.optimizer.step()
        # track: step count, the first non-finite loss and its step, loss sum, correct
        s, loss = self._sums, loss.detach().to(self._float)
        s[0].add_(1)
        first_bad = ~torch.isfinite(loss) & (s[1] < 0)
        s[1].copy_(torch.where(first_bad, s[0], s[1]))
        s[2].copy_(torch.where(first_bad, loss, s[2]))
        s[3].add_(loss * y.shape[0])
        s[4].add_((logits.argmax(1) == y).sum())

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """A step outside any graph; a compiled model's odd-sized last batch runs uncompiled (no recompile)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.compiled and self._compiled_shape not in (None, x.shape):
            forward, self._forward = self._forward, self.model
            self._step(x, y)
            self._forward = forward
        else:
            self._compiled_shape = x.shape
            self._step(x, y)

    def _train_on(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not self.graph:
            self._eager_step(x, y)
            return
        if self._captured is None and self._warmup > 0:  # real steps, on a side stream as capture wants
            self._warmup -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._eager_step(x, y)  # a compiled model compiles here, before the capture
            torch.cuda.current_stream().wait_stream(side)
            return
        if self._captured is None:
            try:
                self._capture(x, y)
            except RuntimeError as e:  # a step that syncs with the host (a callback's .item()) cannot be captured
                self._stop_capturing(e)
                self._eager_step(x, y)
                return
        if x.shape != self._static[0].shape:  # the last, smaller batch of an epoch: one eager step
            self._eager_step(x, y)
            return
        self._static[0].copy_(x)
        self._static[1].copy_(y)
        self._captured.replay()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record the step once as a CUDA graph (nothing runs yet); replays then read their batch from _static."""
        self._static = (x.clone(), y.clone())
        self.optimizer.zero_grad(set_to_none=True)  # backward then writes fresh gradients on every replay
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph):
                self._step(*self._static)
        finally:
            torch.cuda.set_stream(stream)  # a capture that fails to end leaves its own stream the current one
        self._captured = graph

    def _stop_capturing(self, error: RuntimeError) -> None:
        """The capture failed: say why, and train on with the eager step. Nothing of the failed capture ran, so
        the weights and the running sums are as the last real step left them; the record says graph=False."""
        cause = str(error.__context__ or error).strip().splitlines()[0]
        print(f"the training step could not be captured as a CUDA graph ({cause}); {self.name or 'this run'} "
              "goes on with the eager step, as with graph=False (a step that reads a tensor as a number, "
              "with .item() or float(), cannot be captured)", file=sys.stderr)
        self.graph = False
        self._captured = self._static = None
        self.optimizer.zero_grad(set_to_none=True)

    def _after_step(self) -> None:
        for c in self.callbacks:
            c.after_step(self)
        self._keep_on_device()

    def _keep_on_device(self) -> None:
        """What a scheduler assigned as numbers, copied into the tensors a captured step reads."""
        if self._held:
            keep_on_device(self.optimizer, self._held)

    def _look(self, epoch: int, batches=None, seen: int = 0) -> tuple[float, float]:
        """The host's look at the device-side sums (one sync): raise at a non-finite loss; (loss sum, correct)."""
        step, bad_step, bad_loss, loss_sum, correct = self._sums.tolist()
        if bad_step >= 0:
            raise NonFiniteLossError("training", epoch, int(bad_step), bad_loss)
        if hasattr(batches, "set_postfix") and seen:
            batches.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%")
        return loss_sum, correct

    def _check_batch(self, x, y, where: str) -> None:
        """The first batch of a fit: on this device, with labels the model can score (one sync, once)."""
        if not same_device(x.device, self.device) or not same_device(y.device, self.device):
            raise ValueError(f"the {where} loader gave a batch on {x.device}, but the model is on {self.device}; "
                             "build the loaders and the Trainer for one device (make_loaders(device=...))")
        with torch.no_grad():
            training = self.model.training
            self.model.eval()  # eval: no batch-norm statistics or dropout draws are spent on this look
            with self.autocast():
                scores = self.model(x[:2].contiguous(memory_format=torch.channels_last) if self.channels_last
                                    else x[:2])
            self.model.train(training)
        if scores.dim() != 2:
            raise ValueError(f"the model gives an output of shape {tuple(scores.shape)} for a batch of 2 images; "
                             "it must give one row of class scores per image (batch x classes)")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= scores.shape[1]:
            raise ValueError(f"the {where} labels run from {low} to {high}, but the model gives {scores.shape[1]} "
                             f"class scores per image; its last layer needs one output per class")

    # --- loops ---
    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training data; returns (mean loss, accuracy %)."""
        integrity.look(self)  # a kit changed for this epoch is named in the record, even if changed back after
        self.model.train()
        self._sums.zero_()
        self._sums[1] = -1
        self._note_what_trains()
        seen = 0
        batches = _progress(self.train_loader, len(self.train_loader), self._desc(epoch, "train"), self.progress)
        for step, (x, y) in enumerate(batches, 1):
            if not self._checked:
                self._check_batch(x, y, "training")
                self._checked = True
            self._train_on(x, y)
            self._after_step()
            seen += len(y)
            if step % CHECK_EVERY == 0:
                self._look(epoch, batches, seen)
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        loss_sum, correct = self._look(epoch, batches, seen)
        for m in self.model.modules():
            Trainer._module_epochs[m] = Trainer._module_epochs.get(m, 0) + 1
        integrity.look(self)
        return loss_sum / seen, 100 * correct / seen

    def _note_what_trains(self) -> None:
        """What the record must say however the model or the loaders change after: the most parameters trained
        (the model's and the optimizer's), and the loaders trained on."""
        tensors = {id(p): p for p in self.model.parameters()}
        tensors.update({id(p): p for g in self.optimizer.param_groups for p in g["params"]})
        self.parameters_trained = max(self.parameters_trained, sum(p.numel() for p in tensors.values()))
        self.loaders_used["train"].add(_loader_words(self.train_loader))

    def model_epochs(self) -> int:
        """The most epochs any module of this model has been trained for, by any Trainer."""
        return max((Trainer._module_epochs.get(m, 0) for m in self.model.modules()), default=0)

    @torch.no_grad()
    def test_epoch(self, epoch: int = 0, loader=None) -> tuple[float, float]:
        """Evaluate (the EMA weights, when kept); returns (mean loss, accuracy %)."""
        model = self.eval_model
        model.eval()
        loader = loader or self.test_loader
        if epoch:  # an epoch's test, not a look at other data
            self.loaders_used["test"].add(_loader_words(loader))
        loss_sum = torch.zeros((), dtype=self._float, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        for x, y in _progress(loader, len(loader), self._desc(epoch, "test"), self.progress):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
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

    def fit(self, epochs: int | None = None) -> History:
        """Train for `epochs` more epochs (default: the number given at construction)."""
        epochs = self.epochs if epochs is None else epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"fit() trains a whole number of epochs, at least 1; got {epochs!r}")
        self._checked = False
        if not any(t is self for t in Trainer._fitted):
            Trainer._fitted.append(self)
        for _ in range(epochs):
            epoch = len(self.history) + 1
            lr = self.current_lr  # the rate this epoch's first step trains with
            start = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch)
            test_loss, test_acc = self.test_epoch(epoch)
            for c in self.callbacks:
                c.after_epoch(self, test_loss)
            self._keep_on_device()
            record = EpochRecord(epoch, train_loss, train_acc, test_loss, test_acc, lr, time.perf_counter() - start)
            self.history.append(record)
            if self.verbose:
                print(self.line(record), flush=True)
        return self.history

    def _desc(self, epoch: int, phase: str) -> str:
        return f"{self.name + ' · ' if self.name else ''}epoch {epoch} {phase}"

    def line(self, r: EpochRecord) -> str:
        """The epoch's log line, as the notebook prints it (`kit check` reads it back)."""
        return epoch_line(r, self.name)

    @torch.no_grad()
    def misclassified(self, loader=None, limit: int = 25) -> Misclassified:
        """Collect up to `limit` test images that the model gets wrong."""
        model = self.eval_model
        model.eval()
        loader = loader or self.test_loader
        images, predicted, target = [], [], []
        found = 0
        for x, y in loader:
            with self.autocast():
                pred = model(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
                             ).float().argmax(1)
            wrong = pred != y
            images.append(x[wrong].float().cpu())
            predicted.append(pred[wrong].cpu())
            target.append(y[wrong].cpu())
            found += int(wrong.sum())
            if found >= limit:
                break
        cat = lambda parts: torch.cat(parts)[:limit] if parts else torch.zeros(0)  # noqa: E731
        return Misclassified(cat(images), cat(predicted), cat(target), tuple(getattr(loader, "classes", ())),
                             tuple(getattr(loader, "mean", (0.0,))), tuple(getattr(loader, "std", (1.0,))))
