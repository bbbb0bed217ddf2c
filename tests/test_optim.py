"""kit.optim: a captured step's optimiser reads what the schedule sets, on every step (checked here eagerly, on the CPU).

A CUDA graph freezes every Python number its kernels were launched with. torch's fused SGD takes the momentum as a
number, so a captured one-cycle run kept the momentum it had at capture (about 0.95) while the schedule lowers it to
0.85 at the peak rate: the same code trained another recipe on a GPU than on a CPU.
"""
from functools import partial

import pytest
import torch
from torch import nn

from kit.optim import GraphAdam, GraphSGD, hold_on_device, keep_on_device

STEPS = 40


def one_cycle(optimizer):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=STEPS)  # cycles momentum too


def train(make, weight_decay, **options):
    """STEPS one-cycle steps of a small model on fixed batches: the weights after each step, the momentum used."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = make(model.parameters(), lr=0.01, weight_decay=weight_decay, **options)
    held = hold_on_device(optimizer, torch.device("cpu")) if isinstance(optimizer, (GraphSGD, GraphAdam)) else {}
    what = "betas" if "betas" in optimizer.param_groups[0] else "momentum"
    scheduler = one_cycle(optimizer)
    if held:
        keep_on_device(optimizer, held)
    data = torch.Generator().manual_seed(1)
    weights, momenta = [], []
    for _ in range(STEPS - 1):
        x, y = torch.randn(32, 8, generator=data), torch.randint(0, 3, (32,), generator=data)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        momenta.append(float(optimizer.param_groups[0][what][0] if what == "betas" else
                             optimizer.param_groups[0][what]))
        optimizer.step()
        scheduler.step()
        if held:
            keep_on_device(optimizer, held)
            assert optimizer.param_groups[0][what] is held[what]  # the tensor a graph captured
        weights.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
    return weights, momenta


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
@pytest.mark.parametrize("fused", [None, True])  # a GPU's update is torch's fused kernel: compared here on the CPU
def test_graph_sgd_follows_the_schedules_momentum_as_torchs_sgd_does(weight_decay, fused):
    ours, our_momenta = train(partial(GraphSGD, fused=fused), weight_decay, momentum=0.9)
    theirs, their_momenta = train(partial(torch.optim.SGD, fused=fused), weight_decay, momentum=0.9)
    assert our_momenta == pytest.approx(their_momenta, abs=1e-7)
    assert min(their_momenta) < 0.86 < 0.94 < max(their_momenta)  # the schedule does move it
    for step, (a, b) in enumerate(zip(ours, theirs)):
        # torch's arithmetic, bit for bit; the CPU's fused kernel makes the buffer with one rounding where the
        # foreach operations take two (on an H200 the fused and the eager updates gave the same numbers)
        same = torch.equal(a, b) if fused is None else torch.allclose(a, b, rtol=0, atol=1e-7)
        assert same, f"step {step + 1}: {(a - b).abs().max()}"


def test_a_momentum_fixed_at_capture_trains_another_model():
    """What the captured step did before: one momentum, the one it was captured with, for the whole run. The
    comparison above must be able to see that."""
    class Frozen(GraphSGD):
        def step(self, closure=None):
            group = self.param_groups[0]
            self.fixed = getattr(self, "fixed", None) or float(group["momentum"])
            group["momentum"].fill_(self.fixed)
            super().step()

    ours, _ = train(Frozen, 0.0, momentum=0.9)
    theirs, _ = train(torch.optim.SGD, 0.0, momentum=0.9)
    assert not torch.allclose(ours[-1], theirs[-1], rtol=1e-3, atol=1e-4)


def test_adams_betas_are_held_and_follow_the_schedule():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    held = hold_on_device(optimizer, torch.device("cpu"))
    scheduler = one_cycle(optimizer)
    keep_on_device(optimizer, held)
    first = held["betas"][0].item()
    for _ in range(STEPS // 2):
        optimizer.step()  # no gradients: nothing moves but the schedule
        scheduler.step()
        keep_on_device(optimizer, held)
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    assert beta1 is held["betas"][0] and beta2 is held["betas"][1]
    assert beta1.item() < first - 0.05 and beta2.item() == pytest.approx(0.999)
    assert optimizer.param_groups[0]["lr"] is held["lr"] and held["lr"].item() > 0.1



@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_graph_adam_follows_the_schedules_beta_as_torchs_adam_does(weight_decay):
    ours, our_betas = train(GraphAdam, weight_decay)
    theirs, their_betas = train(torch.optim.Adam, weight_decay)
    assert our_betas == pytest.approx(their_betas, abs=1e-7)
    assert min(their_betas) < 0.86 < 0.94 < max(their_betas)  # one-cycle moves Adam's first beta
    for step, (a, b) in enumerate(zip(ours, theirs)):
        # the same update rounded in another order: 3e-6 apart at most over the run, where a first beta fixed
        # at its first value moves the weights by more than 1
        assert torch.allclose(a, b, rtol=0, atol=1e-5), f"step {step + 1}: {(a - b).abs().max()}"


def _reads_no_number(optimizer_class, **options):
    """A step with everything on the meta device, where reading a tensor as a number raises: inside a CUDA graph
    such a read is a host sync, and the capture fails (torch's capturable Adam did so with tensor betas)."""
    weights = [nn.Parameter(torch.zeros(3, 2, device="meta")), nn.Parameter(torch.zeros(2, device="meta"))]
    for w in weights:
        w.grad = torch.zeros_like(w)
    optimizer = optimizer_class(weights, lr=0.01, weight_decay=1e-4, **options)
    hold_on_device(optimizer, torch.device("meta"))
    optimizer.step()
    optimizer.step()


def test_graph_adam_reads_no_device_tensor_as_a_number():
    _reads_no_number(GraphAdam)


def test_the_meta_device_catches_a_tensor_read_as_a_number():
    class Reads(GraphAdam):
        def step(self, closure=None):
            float(self.param_groups[0]["betas"][0])
            super().step()

    with pytest.raises(RuntimeError, match="meta"):
        _reads_no_number(Reads)


def test_graph_adam_refuses_what_it_does_not_do():
    model = nn.Linear(2, 2)
    model.weight.grad = torch.zeros_like(model.weight)
    with pytest.raises(ValueError, match="amsgrad"):
        GraphAdam(model.parameters(), amsgrad=True).step()
