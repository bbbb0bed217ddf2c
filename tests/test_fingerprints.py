"""What training computes, pinned: if a change to the kit changes the numbers a run gives, this fails.

Every report in reports/ was made by the kit's numbers version (kit.record.NUMBERS); `kit check` calls a
report stale once the kit computes another version. These short runs on the CPU (one thread, fixed seeds)
cover what a notebook's numbers depend on: the data paths and their augmentation, the models' initial
weights, the training step, the schedules, EMA, L1, label smoothing and distillation. When they change on
purpose: bump kit.record.NUMBERS, run the reports again (`python -m kit run --changed-only`) and write new
fingerprints with `KIT_UPDATE_FINGERPRINTS=1 python -m pytest tests/test_fingerprints.py`.

They must hold on any x86 CPU CI may get. So no scenario trains with dropout: torch draws a CPU dropout mask with
MKL's generator on an Intel CPU and with its own elsewhere, so one seed gives other masks on an AMD CPU (dropout is
torch's; where the kit puts it, tests/test_models.py checks).
"""
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import kit
from conftest import make_imageset
from kit.record import NUMBERS

GOLDEN = Path(__file__).with_name("fingerprints.json")
TOLERANCE = 1e-3  # relative: another CPU may round a little differently; a changed computation moves far more


def _train(model, data, *, epochs=2, batch=32, augment=None, lr=0.05, seed=0, **options):
    kit.set_seed(seed)
    train, test = kit.make_loaders((data, data), batch_size=batch, test_batch_size=64, device="cpu", seed=seed,
                                   augment=augment)
    t = kit.Trainer(model, train, test, epochs=epochs, lr=lr, verbose=False, progress=False, **options)
    t.fit()
    return t, [round(v, 7) for r in t.history.epochs for v in (r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr)]


def scenarios() -> dict[str, list[float]]:
    torch.set_num_threads(1)
    grey, rgb = make_imageset(n=192, size=28, classes=10), make_imageset(n=96, channels=3, size=32, classes=10)
    out = {}
    kit.set_seed(0)
    _, out["step: batch norm, affine augmentation, one-cycle"] = _train(
        kit.models.LighterNet(norm="batch"), grey,
        augment=kit.Augment(rotation=7, translate=0.1, scale=(0.9, 1.1)), scheduler=kit.OneCycle(max_lr=0.1))
    kit.set_seed(0)
    teacher, out["callbacks: step schedule, EMA, L1, label smoothing"] = _train(
        kit.models.PoolAt5Net(), grey, scheduler=kit.StepLR(step_size=1, gamma=0.5), label_smoothing=0.1,
        callbacks=[kit.EMA(0.99), kit.L1(1e-5)])
    kit.set_seed(0)
    _, out["distillation"] = _train(kit.models.PoolAt5Net(), grey, callbacks=[kit.Distillation(teacher.model)])
    kit.set_seed(0)
    _, out["crop and flip, group norm, adam"] = _train(
        kit.models.NormNet("group"), rgb, augment=kit.Augment(crop_padding=4, hflip=True), optimizer="adam", lr=0.003)
    x = torch.linspace(-1, 1, 2 * 28 * 28).view(2, 1, 28, 28)
    for name in ("SetupNet", "SkeletonNet", "LighterNet", "GapNet", "CapacityNet", "PoolAt5Net", "CompactNet"):
        kit.set_seed(0)
        model = getattr(kit.models, name)().eval()
        with torch.no_grad():
            out[f"initial weights: {name}"] = [round(float(model(x).sum()), 6), kit.count_parameters(model)]
    return out


def test_training_computes_what_the_reports_were_made_with():
    got = scenarios()
    if os.environ.get("KIT_UPDATE_FINGERPRINTS") == "1":
        GOLDEN.write_text(json.dumps({"numbers": NUMBERS, "scenarios": got}, indent=1) + "\n")
        pytest.skip(f"wrote {GOLDEN.name}")
    golden = json.loads(GOLDEN.read_text())
    changed = [name for name, values in got.items() if name not in golden["scenarios"] or
               len(values) != len(golden["scenarios"][name]) or
               any(abs(a - b) > TOLERANCE * max(abs(b), 1e-3) for a, b in zip(values, golden["scenarios"][name]))]
    assert not changed, (
        f"training now computes other numbers ({', '.join(changed)}). If that is meant: bump kit.record.NUMBERS "
        f"(now {NUMBERS}), run the reports again and write new fingerprints (see this module's docstring)")
    assert golden["numbers"] == NUMBERS, "the fingerprints were written for another NUMBERS: write them again"


def test_a_model_with_parameters_of_two_kinds_is_counted_whole():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert kit.count_parameters(model) == 10 and kit.count_parameters(model, trainable_only=False) == 26
