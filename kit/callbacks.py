"""Pieces of training that plug into the Trainer's loop: schedulers, EMA, L1, knowledge distillation.

In the manner of miniai's Learner callbacks, the loop stays a plain loop and
each trick is a small object with the hooks it needs:

- `begin(trainer)`: once, when the Trainer is built (its model, optimiser and device exist);
- `loss(trainer, loss, logits, x, y)`: add to or replace the step's loss. It runs inside the
  training step, which may be captured as a CUDA graph, so it must use tensors only (no
  `.item()`, no Python branching on values);
- `after_step(trainer)`: after each optimiser step, outside the captured step;
- `after_epoch(trainer, test_loss)`: after each epoch's test.

Loss hooks apply in the order the callbacks are given.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Callback:
    """Does nothing at every hook; subclasses override the ones they need."""

    def begin(self, trainer) -> None:
        pass

    def loss(self, trainer, loss: torch.Tensor, logits: torch.Tensor, x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
        return loss

    def after_step(self, trainer) -> None:
        pass

    def after_epoch(self, trainer, test_loss: float) -> None:
        pass


# --- learning-rate schedules (introduced in 10_learning_rates) ---------------------------

@dataclass
class StepLR(Callback):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""

    step_size: int = 5
    gamma: float = 0.1

    def begin(self, trainer) -> None:
        self.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, self.step_size, self.gamma)

    def after_epoch(self, trainer, test_loss: float) -> None:
        self.scheduler.step()


@dataclass
class OneCycle(Callback):
    """One cycle per run, stepped every batch: the rate climbs from max_lr / div_factor to `max_lr`
    over the first `pct_start` of the steps, then anneals to far below where it began."""

    max_lr: float | None = None  # default: the Trainer's lr
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def begin(self, trainer) -> None:
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            trainer.optimizer, max_lr=float(self.max_lr or trainer.lr), epochs=trainer.epochs,
            steps_per_epoch=len(trainer.train_loader), pct_start=self.pct_start, div_factor=self.div_factor,
            final_div_factor=self.final_div_factor)

    def after_step(self, trainer) -> None:
        self.scheduler.step()


@dataclass
class Plateau(Callback):
    """Multiply the learning rate by `factor` when the test loss has not improved for `patience` epochs."""

    factor: float = 0.1
    patience: int = 2

    def begin(self, trainer) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(trainer.optimizer, factor=self.factor,
                                                                    patience=self.patience)

    def after_epoch(self, trainer, test_loss: float) -> None:
        self.scheduler.step(test_loss)


SCHEDULERS = (StepLR, OneCycle, Plateau)


# --- the weights' moving average (introduced in the distillation study) -----------------

class EMA(Callback):
    """Test with an exponential moving average of the weights instead of the weights themselves.

    After step t the average keeps `d` of itself and takes 1 - d of the new weights, with
    d = min(decay, (1 + t) / (10 + t)) while `warmup` is on: without it, an average with decay
    0.999 sits near the random initial weights for about a thousand steps (two epochs of
    MNIST at batch 128) and tests at chance. Batch-norm statistics are copied, not averaged.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must lie in (0, 1), e.g. 0.999; got {decay}")
        self.decay, self.warmup, self.steps = decay, warmup, 0

    def begin(self, trainer) -> None:
        self.model = copy.deepcopy(trainer.model).requires_grad_(False)
        self._average, self._weights = list(self.model.parameters()), list(trainer.model.parameters())
        self._kept, self._live = list(self.model.buffers()), list(trainer.model.buffers())

    def after_step(self, trainer) -> None:
        self.steps += 1
        t = self.steps
        d = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
        with torch.no_grad():  # one multi-tensor kernel each, never a host sync
            if self._average:
                torch._foreach_lerp_(self._average, self._weights, 1 - d)
            if self._kept:
                torch._foreach_copy_(self._kept, self._live)

    @property
    def eval_model(self) -> nn.Module:
        return self.model

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, warmup={self.warmup})"


# --- extra terms of the loss ----------------------------------------------------------------

@dataclass
class L1(Callback):
    """Add `weight` times the sum of the absolute values of every weight (not the biases or norms)."""

    weight: float

    def begin(self, trainer) -> None:
        self.weights = [p for p in trainer.model.parameters() if p.dim() > 1]

    def loss(self, trainer, loss, logits, x, y):
        return loss + self.weight * sum(p.abs().sum() for p in self.weights)


@dataclass
class Distillation(Callback):
    """Teach a student with a trained teacher's softened scores as well as the labels.

    loss = alpha * T^2 * KL(teacher's softmax(z/T) || student's softmax(z/T)) + (1 - alpha) * the hard loss.
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
        self.teacher.eval()

    def begin(self, trainer) -> None:
        trainer.prepare(self.teacher)  # the trainer's device, memory format and norms in fp32
        self.teacher.eval().requires_grad_(False)

    def loss(self, trainer, loss, logits, x, y):
        with torch.no_grad(), trainer.autocast():
            teacher_logits = self.teacher(x).float()
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                        reduction="batchmean", log_target=True) * t * t
        return self.alpha * soft + (1 - self.alpha) * loss
