"""Optimisers for a captured step: every number a schedule changes lives in a device tensor.

A CUDA graph replays the kernels it captured with the arguments they had then. A learning rate, a momentum or
Adam's betas passed as Python numbers are frozen at capture, while a one-cycle schedule changes the rate and the
momentum (SGD's, or Adam's first beta) on every step. So a captured step reads them from device tensors, and after
each scheduler step `keep_on_device` copies the numbers the scheduler assigned into those tensors, in place (no
host sync). torch's SGD takes its momentum only as a number; `GraphSGD` is the same update reading a tensor.
"""
from __future__ import annotations

import torch
from torch.optim.sgd import sgd

HELD = ("lr", "momentum", "betas")  # what a scheduler may change during a run


class GraphSGD(torch.optim.SGD):
    """SGD with momentum (no dampening, no Nesterov) whose rate and momentum may be 0-d device tensors. The
    momentum buffer is made with the same foreach operations as torch's SGD (buffer = momentum * buffer + gradient,
    weight decay added to the gradient first; a new buffer starts at zero, so its first value is the first
    gradient); the weights then move by torch's own SGD update without momentum (fused on a GPU, as the captured
    step's update was before), lr times the buffer. So the arithmetic is torch's, only the momentum is read
    from the device."""

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("GraphSGD.step takes no closure")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            buffers = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(buffers, group["momentum"])
            torch._foreach_add_(buffers, grads)
            fused = params[0].is_cuda if group.get("fused") is None else group["fused"]
            sgd(params, buffers, [], fused=fused, foreach=False if not fused else None, weight_decay=0.0,
                momentum=0.0, lr=group["lr"], dampening=0.0, nesterov=False, maximize=False)


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
