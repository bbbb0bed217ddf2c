"""Checks of the CUDA paths that a CPU cannot run: `python benchmarks/gpu_checks.py [--quick] [--out FILE]`.

Each check prints one line (ok / FAILED and what it measured) and the whole set is written as JSON:
- the captured CUDA-graph step computes what the eager step computes (same start, same batches, a few steps);
- the captured step trains as well as the eager step (2 epochs, 3 seeds each);
- a rerun with the same seed gives the same numbers, bit for bit, on each path;
- the NaN guard stops a diverging run inside a captured graph and names its epoch and step;
- schedulers, EMA, L1 and distillation work inside a captured step, and the log's rate is the one trained with;
- Adam (kit.optim.GraphAdam) trains inside a captured step under one-cycle, which moves its first beta;
- a step that cannot be captured (a callback reads the loss as a number) trains on with the eager step;
- bf16 autocast keeps the norms in fp32;
- where a training step's time goes (informational): wall and GPU-busy time per step, kernels per step, the
  busiest kernels, and what the loader alone costs, for the captured step in bf16, fp32 and fp32 NCHW and the eager
  one.
On a machine without CUDA, `--quick` runs the same checks on the CPU's eager path (a dry run of this script).
Exit status: 0 all passed; 1 some check missed what it expects; 2 the captured step is broken: it raised, or it
computes something else than the eager step (run with KIT_GRAPH=0).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kit  # noqa: E402
from kit.bench import _sync, solution_model  # noqa: E402

RESULTS: dict[str, dict] = {}


def check(name):
    def wrap(fn):
        def run(*args):
            start = time.perf_counter()
            try:
                facts = fn(*args) or {}
                RESULTS[name] = {"ok": True, **facts}
            except Exception as e:  # a failed check must not hide the others
                RESULTS[name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()[-2000:]}
            RESULTS[name]["seconds"] = round(time.perf_counter() - start, 2)
            r = RESULTS[name]
            shown = {k: v for k, v in r.items() if k not in ("ok", "traceback")}
            print(f"{'ok' if r['ok'] else 'FAILED':>6}  {name}: {shown}", flush=True)
        return run
    return wrap


def data(n):
    train, test = kit.load("mnist", "train"), kit.load("mnist", "test")
    return train.subset(n), test.subset(min(n, len(test)))


def fit(device, graph, sets, *, epochs=2, seed=0, net=None, lr=0.2, **options):
    kit.set_seed(seed)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    net = net or solution_model()[0]
    model = net()
    train, test = kit.make_loaders(sets, device=device, seed=seed,
                                   augment=kit.Augment(rotation=7, translate=0.1, scale=(0.9, 1.1)))
    graph = graph and device.type == "cuda"  # a dry run on a CPU takes the eager path for both
    options.setdefault("scheduler", kit.OneCycle(max_lr=lr))
    t = kit.Trainer(model, train, test, epochs=epochs, lr=lr, graph=graph, verbose=False, progress=False, **options)
    kit.Trainer.forget_fitted()  # the Trainer remembers every fitted one for a notebook's record: none is wanted here
    t.fit()
    return t


def weights(t):
    return torch.cat([p.detach().float().flatten() for p in t.model.parameters()])


def state(model) -> dict[str, list[torch.Tensor]]:
    """Float copies of the weights and of the float buffers (batch-norm statistics)."""
    copy = lambda ts: [t.detach().float().clone() for t in ts if t.is_floating_point()]  # noqa: E731
    return {"weights": copy(model.parameters()), "statistics": copy(model.buffers())}


def update_gap(start, eager, graph) -> float:
    """How far apart two runs' updates are: the norm of their difference over the norm of the eager update, for
    the weights and for the batch-norm statistics apart (the statistics' larger updates must not hide the
    weights'); the larger of the two. Measured on the 2-core CPU over 6 and 10 steps of the step-4 model:
    kernels that sum in another order (1 or 2 threads, NCHW or channels_last) part them by 0.025 to 0.038 (a
    gradient behind a batch norm is a sum that nearly cancels); a 10% larger rate by 0.10 to 0.11; every other
    step skipped by 0.50 (10 steps); doubled gradients by 0.86 to 0.87. Over 40 steps: another order 0.045, a
    momentum held at its third step's value while one-cycle moves it 0.46 (0.03 over 10 steps: too few to see
    it), every other step skipped 0.60, doubled gradients 0.94 (tests/test_gpu_checks.py holds them to that). A
    captured step that kept stale gradients, read a stale rate or momentum, or skipped an update is that far off."""
    norm = lambda ts: torch.cat([t.flatten() for t in ts]).norm()  # noqa: E731
    gaps = []
    for part in ("weights", "statistics"):
        ue = [e - s for s, e in zip(start[part], eager[part])]
        ug = [g - s for s, g in zip(start[part], graph[part])]
        if ue:
            gaps.append((norm([a - b for a, b in zip(ue, ug)]) / norm(ue).clamp_min(1e-12)).item())
    return max(gaps)


STEP_LIKE_EAGER = "the captured step computes what the eager step computes"
STEPS = 40  # 3 eager warm-up steps, the capture, then replays; enough for a stale momentum to show (update_gap)
GAP_LIMIT = 0.25  # on update_gap: rounding about 0.03, a broken step 0.1 to 1 (tests/test_gpu_checks.py)


@check(STEP_LIKE_EAGER)
def step_like_eager(device, sets):
    """STEPS steps from one start on the same batches, the rate and the momentum changing every step (one-cycle):
    the updates of the captured step must be the eager step's, up to rounding (the captured update is
    kit.optim's, and cuDNN may choose other kernels during capture). A captured step that kept stale gradients,
    read a stale rate or momentum, or skipped an update is far from it (update_gap)."""
    train, test = sets
    out = {}
    for amp in (False, None):  # fp32, then the default (bf16 on a GPU that has it)
        runs = []
        for graph in (False, device.type == "cuda"):
            kit.set_seed(0)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            model = solution_model()[0]()
            loaders = kit.make_loaders((train.subset(128 * STEPS), test), device=device, seed=0, batch_size=128)
            t = kit.Trainer(model, *loaders, epochs=1, lr=0.05, scheduler=kit.OneCycle(), graph=graph, amp=amp,
                            verbose=False, progress=False)
            before = state(t.model)
            loss, _ = t.train_epoch(1)
            runs.append((before, state(t.model), loss, t.current_lr))
        (start_e, after_e, loss_e, lr_e), (start_g, after_g, loss_g, lr_g) = runs
        gap = update_gap(start_e, after_e, after_g)
        name = "fp32" if amp is False else f"default ({str(t.amp_dtype or 'fp32').replace('torch.', '')})"
        out[name] = {"update gap": round(gap, 5), "eager loss": loss_e, "graph loss": loss_g}
        assert all(map(torch.equal, start_e["weights"], start_g["weights"])), "the runs started from other weights"
        assert gap < GAP_LIMIT, out
        assert abs(loss_e - loss_g) <= 0.01 * abs(loss_e), out
        assert same_rate(lr_e, lr_g, captured=device.type == "cuda"), {"eager rate": lr_e, "graph rate": lr_g, **out}
    return out


def same_rate(eager: float, graph: float, *, captured: bool) -> bool:
    """A captured step reads its rate from a float32 tensor: the eager step's rate, rounded to float32 (an H200
    read 0.0024759683292359114 where the eager step had 0.002475968399326312); an eager one's exactly."""
    return graph == (torch.tensor(eager, dtype=torch.float32).item() if captured else eager)


GRAPH_LIKE_EAGER = "graph step trains like the eager step"
SEEDS = (0, 1, 2)


@check(GRAPH_LIKE_EAGER)
def graph_like_eager(device, sets):
    """Same starts, same batches: the captured step must train as well as the eager one. Their numbers are not
    bit for bit the same (cuDNN may choose other kernels during capture, and the captured update is kit.optim's),
    so each path trains from SEEDS, and the captured runs' mean must come within a point of the eager runs' worst,
    their train loss likewise. On an H200 this check caught a captured step whose momentum was fixed at capture
    while the one-cycle schedule moves it: 94.17 to 95.48% captured against 96.42 to 96.85% eager, train loss
    0.37 against 0.24 to 0.30 (the CPU, holding the momentum fixed the same way, gave 94.13 to 96.54% against
    96.85 to 97.58%). The full-length bench compares them over 15 epochs."""
    runs = {graph: [fit(device, graph, sets, seed=seed) for seed in SEEDS] for graph in (False, True)}
    acc = {graph: [t.history[-1].test_acc for t in ts] for graph, ts in runs.items()}
    loss = {graph: [t.history[-1].train_loss for t in ts] for graph, ts in runs.items()}
    out = {"eager test acc": acc[False], "graph test acc": acc[True],
           "eager train loss": [round(x, 5) for x in loss[False]], "graph train loss": [round(x, 5) for x in loss[True]]}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(acc[True]) >= min(acc[False]) - 1.0, out
    assert mean(loss[True]) <= max(loss[False]) * 1.1 + 0.02, out
    return out


@check("reruns give the same numbers, bit for bit")
def reruns_repeat(device, sets):
    out = {}
    for graph in ([False, True] if device.type == "cuda" else [False]):
        a, b = fit(device, graph, sets), fit(device, graph, sets)
        numbers = lambda t: [{k: v for k, v in r.items() if k != "seconds"} for r in t.history.to_list()]  # noqa: E731
        same = torch.equal(weights(a), weights(b)) and numbers(a) == numbers(b)
        out[f"{'graph' if graph else 'eager'} identical"] = same
    assert all(out.values()), out
    return out


@check("the NaN guard stops a diverging captured run and names epoch and step")
def nan_guard(device, sets):
    try:
        fit(device, device.type == "cuda", sets, epochs=1, lr=1e30, scheduler=None)
    except kit.NonFiniteLossError as e:
        assert e.phase == "training" and e.epoch == 1 and 1 <= e.step <= 79, (e.phase, e.epoch, e.step)
        return {"raised at": f"epoch {e.epoch}, step {e.step}", "loss": e.value}
    raise AssertionError("no NonFiniteLossError at lr 1e30")


@check("schedulers, EMA, L1 and distillation run inside a captured step")
def callbacks_in_graph(device, sets):
    graph = device.type == "cuda"
    step = fit(device, graph, sets, epochs=3, lr=0.1, scheduler=kit.StepLR(step_size=1, gamma=0.5))
    lrs = step.history.column("lr")
    assert [round(x, 6) for x in lrs] == [0.1, 0.05, 0.025], lrs
    plateau = fit(device, graph, sets, epochs=2, lr=0.05, scheduler=kit.Plateau(patience=0, factor=0.5))
    ema = fit(device, graph, sets, epochs=1, callbacks=[kit.EMA(0.999)])
    l1 = fit(device, graph, sets, epochs=1, callbacks=[kit.L1(1e-5)])
    kd = fit(device, graph, sets, epochs=1, callbacks=[kit.Distillation(step.model, temperature=4.0, alpha=0.7)])
    accs = {name: t.history[-1].test_acc for name, t in
            (("step", step), ("plateau", plateau), ("ema", ema), ("l1", l1), ("kd", kd))}
    # above chance (10%): each learned something; a dry run's 2,000 images are too few for EMA at 0.999 to move
    assert len(sets[0]) < 10_000 or min(accs.values()) > 15, accs
    return {"step lrs": lrs, "plateau lrs": plateau.history.column("lr"), **{f"{k} test acc": v for k, v in accs.items()}}


ADAM = "Adam trains inside a captured step as it does eagerly"


@check(ADAM)
def adam_in_graph(device, sets):
    graph = device.type == "cuda"
    adam = fit(device, graph, sets, epochs=2, optimizer="adam", lr=0.01)
    eager = fit(device, False, sets, epochs=2, optimizer="adam", lr=0.01)
    accs = {"graph": adam.history.column("test_acc"), "eager": eager.history.column("test_acc")}
    assert len(sets[0]) < 10_000 or min(accs["graph"]) > 15, accs
    return {f"{k} test acc": v for k, v in accs.items()}


UNCAPTURABLE = "a step that cannot be captured trains on with the eager step"


class ReadsTheLoss(kit.Callback):
    """Reads the loss as a number inside the step: a host sync, which a CUDA graph's capture refuses."""

    def loss(self, trainer, loss, logits, x, y):
        self.last = float(loss.detach())
        return loss


@check(UNCAPTURABLE)
def uncapturable_step(device, sets):
    tried = fit(device, device.type == "cuda", sets, epochs=2, callbacks=[ReadsTheLoss()])
    eager = fit(device, False, sets, epochs=2, callbacks=[ReadsTheLoss()])
    accs = {"tried to capture": tried.history.column("test_acc"), "eager": eager.history.column("test_acc")}
    assert not tried.graph, "the trainer still says it captured its step"
    # the eager step with kit.optim's update against torch's: the same arithmetic, its last bits aside
    assert all(abs(a - b) <= 0.5 for a, b in zip(accs["tried to capture"], accs["eager"])), accs
    return {f"{k} test acc": v for k, v in accs.items()}


@check("bf16 autocast keeps the norms in fp32")
def norms_fp32(device, sets):
    t = fit(device, device.type == "cuda", sets, epochs=1)
    seen = []
    for m in t.model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda mod, a: seen.append(a[0].dtype))
    with torch.no_grad(), t.autocast():
        t.model(next(iter(t.test_loader))[0][:4].contiguous(memory_format=torch.channels_last))
    assert seen and all(d == torch.float32 for d in seen), seen
    return {"amp": str(t.amp_dtype), "norm input dtypes": sorted({str(d) for d in seen})}


@check("speed of the step: eager against the captured graph")
def speed(device, sets):
    out = {}
    for graph in ([False, True] if device.type == "cuda" else [False]):
        t = fit(device, graph, sets, epochs=3)
        per_epoch = [r.seconds for r in t.history.epochs]
        out[f"{'graph' if graph else 'eager'} s/epoch (epochs 2-3, train+test)"] = round(sum(per_epoch[1:]) / 2, 3)
    return out


@check("where the time of a training step goes")
def step_profile(device, sets):
    """Wall time per step (no profiler), then one profiled epoch: GPU-busy time and kernels per step, and the
    kernels that take most of it. Where wall time is well above GPU-busy time the host is the bound (launches,
    the loader); where they meet, the kernels themselves are."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    out = {}
    for name, options in (("graph bf16", dict(graph=True)), ("graph fp32", dict(graph=True, amp=False)),
                          ("graph fp32 NCHW", dict(graph=True, amp=False, channels_last=False)),
                          ("eager", dict(graph=False))):
        if not cuda and options["graph"]:
            continue
        # a constant rate: the epochs after fit()'s one (warm-up and capture) go past no schedule's end
        t = fit(device, options.pop("graph"), sets, epochs=1, lr=0.05, scheduler=None, **options)
        steps = len(t.train_loader)
        a = time.perf_counter()
        for _ in t.train_loader:  # the loader alone: indexing, augmentation, normalisation
            pass
        _sync(device)
        loader_ms = (time.perf_counter() - a) / steps * 1e3
        a = time.perf_counter()
        t.train_epoch(2)
        _sync(device)
        wall_ms = (time.perf_counter() - a) / steps * 1e3
        with profile(activities=activities) as p:
            t.train_epoch(3)
            _sync(device)
        row = {"ms per step": round(wall_ms, 3), "loader alone, ms per batch": round(loader_ms, 3)}
        if cuda:
            kernels = [e for e in p.key_averages() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
            busy = lambda e: getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)  # noqa: E731
            row["GPU busy ms per step"] = round(sum(busy(e) for e in kernels) / steps / 1e3, 3)
            row["kernels per step"] = round(sum(e.count for e in kernels) / steps, 1)
            row["busiest kernels (us per step)"] = {e.key[:70]: round(busy(e) / steps, 1)
                                                    for e in sorted(kernels, key=busy, reverse=True)[:6]}
        out[name] = row
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer images (a dry run of the script)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device = kit.pick_device("auto")
    if device.type != "cuda" and not args.quick:
        print("no CUDA GPU here: use --quick for a dry run on the CPU", file=sys.stderr)
        return 1
    if device.type == "cpu":
        torch.set_num_threads(1)  # as `kit run` does: a CPU repeats its numbers bit for bit on one thread only
    sets = data(2_000 if args.quick else 10_000)
    print(f"device: {kit.record.device_name(device)}; torch {torch.__version__}; {len(sets[0]):,} training images",
          flush=True)
    # the step that cannot be captured last of the checks of what the kit computes: a failed capture could leave
    # the GPU unusable for what follows
    for run in (step_like_eager, graph_like_eager, reruns_repeat, nan_guard, callbacks_in_graph, adam_in_graph,
                norms_fp32, uncapturable_step, speed,
                step_profile):
        run(device, sets)
    if args.out:
        args.out.write_text(json.dumps({"device": kit.record.device_name(device), "torch": torch.__version__,
                                        "checks": RESULTS}, indent=1, default=str))
    failed = [name for name, r in RESULTS.items() if not r["ok"]]
    print(f"{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    # 2: the captured step itself is broken (it raised, computes something else than the eager one, or trains
    # worse over seeds): run without it. A failed graph_like_eager was once read as rounding that grows over a
    # run; it was the momentum a graph had fixed, and the batch it let through trained another recipe.
    # No notebook of the batch trains with Adam or has a step that cannot be captured: a failure of those checks
    # does not send them eager.
    broken = [n for n in failed if n not in (ADAM, UNCAPTURABLE)
              and (not RESULTS[n]["error"].startswith("AssertionError") or n in (STEP_LIKE_EAGER, GRAPH_LIKE_EAGER))]
    return 2 if broken else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
