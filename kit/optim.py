"""Optimisers for a captured step: every number a schedule changes lives in a device tensor.

A CUDA graph replays the kernels it captured with the arguments they had then. A learning rate, a momentum or
Adam's betas passed as Python numbers are frozen at capture, while a one-cycle schedule changes the rate and the
momentum (SGD's, or Adam's first beta) on every step. So a captured step reads them from device tensors, and after
each scheduler step `keep_on_device` copies the numbers the scheduler assigned into those tensors, in place (no
host sync). torch's SGD takes its momentum only as a number; `GraphSGD` is the same update reading a tensor.
torch's capturable Adam takes tensor betas but reads them as numbers in its bias corrections (a host sync, which
stops a capture: measured on an H200); `GraphAdam` is Adam's update with every number read from the device.
"""
from __future__ import annotations

import torch
from torch.optim.sgd import sgd

HELD = ("lr", "momentum", "betas")  # what a scheduler may change during a run


def _with_grads(optimizer: torch.optim.Optimizer, closure):
    """Each param group with its parameters that have gradients, and their gradients, L2 weight decay added."""
    if closure is not None:
        raise ValueError(f"{type(optimizer).__name__}.step takes no closure")
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            yield group, params, grads


class GraphSGD(torch.optim.SGD):
    """SGD with momentum (no dampening, no Nesterov) whose rate and momentum may be 0-d device tensors. The
    momentum buffer is made with the same foreach operations as torch's SGD (buffer = momentum * buffer + gradient,
    weight decay added to the gradient first; a new buffer starts at zero, so its first value is the first
    gradient); the weights then move by torch's own SGD update without momentum (fused on a GPU, as the captured
    step's update was before), lr times the buffer. So the arithmetic is torch's, only the momentum is read
    from the device."""

    @torch.no_grad()
    def step(self, closure=None):
        for group, params, grads in _with_grads(self, closure):
            buffers = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, grads)
            fused = params[0].is_cuda if group.get("fused") is None else group["fused"]
            sgd(params, buffers, [], fused=fused, foreach=False if not fused else None, weight_decay=0.0,
                momentum=0.0, lr=group["lr"], dampening=0.0, nesterov=False, maximize=False)


class GraphAdam(torch.optim.Adam):
    """Adam (L2 weight decay, no AMSGrad) whose rate and betas may be 0-d device tensors, made of foreach
    operations only, none of which reads a tensor as a number. Its arithmetic is Adam's, rounded in another order
    than torch's Adam (within 3e-6 of it over 40 one-cycle steps: tests/test_optim.py)."""

    @torch.no_grad()
    def step(self, closure=None):
        for group, params, grads in _with_grads(self, closure):
            if group["amsgrad"] or group["maximize"] or group.get("decoupled_weight_decay"):
                raise ValueError("GraphAdam is plain Adam: no amsgrad, maximize or decoupled weight decay")
            for p in params:
                if not self.state[p]:
                    self.state[p].update(step=torch.zeros((), device=p.device), exp_avg=torch.zeros_like(p),
                                         exp_avg_sq=torch.zeros_like(p))
            states = [self.state[p] for p in params]
            means, squares = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
            torch._foreach_add_([s["step"] for s in states], 1)
            beta1, beta2 = group["betas"]
            # mean = beta1 mean + (1 - beta1) grad; square = beta2 square + (1 - beta2) grad²
            torch._foreach_mul_(means, beta1)
            torch._foreach_add_(means, torch._foreach_mul(grads, 1 - beta1))
            torch._foreach_mul_(squares, beta2)
            torch._foreach_add_(squares, torch._foreach_mul(torch._foreach_mul(grads, grads), 1 - beta2))
            # weights -= lr / (1 - beta1^t) * mean / (sqrt(square / (1 - beta2^t)) + eps); all params share t
            t = states[0]["step"]
            step_size = group["lr"] / (1 - beta1 ** t)
            denominators = torch._foreach_sqrt(squares)
            torch._foreach_div_(denominators, torch.sqrt(1 - beta2 ** t))
            torch._foreach_add_(denominators, group["eps"])
            torch._foreach_div_(denominators, step_size)
            torch._foreach_addcdiv_(params, means, denominators, value=-1.0)


def hold_on_device(optimizer: torch.optim.Optimizer, device: torch.device) -> dict:
    """Put the first group's rate, momentum and betas into device tensors; return them by name."""
    group, held = optimizer.param_groups[0], {}
    for key in HELD:
        if key in group:
            value = group[key]
            held[key] = tuple(torch.tensor(float(v), device=device) for v in value) if key == "betas" \
                else torch.tensor(float(value), device=device)
            group[key] = held[key]
    return held


def keep_on_device(optimizer: torch.optim.Optimizer, held: dict) -> None:
    """Copy what a scheduler assigned (numbers in place of the tensors) into the held tensors, and put them back."""
    group = optimizer.param_groups[0]
    for key, tensor in held.items():
        value = group[key]
        if key == "betas":
            for t, v in zip(tensor, value):
                if v is not t:
                    t.fill_(float(v))
        elif value is not tensor:
            tensor.fill_(float(value))
        group[key] = tensor
