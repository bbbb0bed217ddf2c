"""What training computes, pinned: if a change to the kit changes the numbers a run gives, this fails.

Every report in reports/ was made by the kit's numbers version (kit.record.NUMBERS); `kit check` calls a
report stale once the kit computes another version. These short runs on the CPU (one thread, fixed seeds)
cover what a notebook's numbers depend on: the data paths and their augmentation, the models' initial
weights, the training step, the schedules, EMA, L1, label smoothing and distillation. When they change on
purpose: bump kit.record.NUMBERS, run the reports again (`python -m kit run --changed-only`) and write new
fingerprints with `KIT_UPDATE_FINGERPRINTS=1 python -m pytest tests/test_fingerprints.py`.

They must hold on any x86 CPU CI may get, whose kernels (AVX2 or AVX-512, in torch, oneDNN and MKL) round
differently in the last bit. So a scenario is one whose training does not amplify a last bit into a changed figure:
- the grey ones train on 128 real MNIST images for 8 steps. On generated images (a class in the brightness) the
  models barely learned, and their training blew a last bit up: with AVX2 kernels a loss moved by up to 28%;
- the affine augmentation's pixels are pinned by their moments, not trained on: its bilinear sampling rounds
  differently with AVX2 kernels (by 1e-5), and training on it moved the fourth step's loss by 0.5% on MNIST.
  Crop and flip move whole pixels, so that scenario trains with them;
- no scenario trains with dropout: torch draws a CPU dropout mask with MKL's generator on an Intel CPU and with its
  own elsewhere, so one seed gives other masks on an AMD CPU (where the kit puts dropout, tests/test_models.py checks).
`test_they_hold_with_avx2_kernels` runs them again with the AVX2 kernels forced, as an AVX2-only CPU would run them.
"""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import kit
from conftest import make_imageset
from kit.record import NUMBERS

GOLDEN = Path(__file__).with_name("fingerprints.json")
TOLERANCE = 1e-3  # relative: another CPU may round a little differently; a changed computation moves far more
# what an AVX2-only x86 CPU runs, forced on one that has AVX-512: torch's own kernels, oneDNN's and MKL's
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _train(model, data, *, epochs=2, batch=32, augment=None, lr=0.05, seed=0, **options):
    kit.set_seed(seed)
    train, test = kit.make_loaders(data, batch_size=batch, test_batch_size=64, device="cpu", seed=seed,
                                   augment=augment)
    t = kit.Trainer(model, train, test, epochs=epochs, lr=lr, verbose=False, progress=False, **options)
    t.fit()
    return t, [round(v, 7) for r in t.history.epochs for v in (r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr)]


def _moments(loader) -> list[float]:
    """The first batch's first 8 images, as pixel mass and its first and second moments about the top-left corner
    (a shift moves the first, a turn or zoom the second), and their labels (the shuffle)."""
    x, y = next(iter(loader))
    pixels = x[:8, 0] * loader.std[0] + loader.mean[0]  # 0 to 1 again
    rows, cols = torch.meshgrid(torch.arange(1.0, 29), torch.arange(1.0, 29), indexing="ij")
    per_image = [pixels.sum((1, 2))] + [(pixels * w).sum((1, 2)) for w in (cols, rows, cols * cols, rows * rows,
                                                                         cols * rows)]
    return [round(float(v), 5) for v in torch.stack(per_image, 1).flatten()] + [float(v) for v in y[:8]]


def scenarios(root) -> dict[str, list[float]]:
    torch.set_num_threads(1)
    mnist = (kit.data.load("mnist", "train", root).subset(128), kit.data.load("mnist", "test", root).subset(128))
    rgb = make_imageset(n=96, channels=3, size=32, classes=10)
    out = {}
    kit.set_seed(0)
    train, _ = kit.make_loaders(mnist, batch_size=32, device="cpu", seed=0,
                                augment=kit.Augment(rotation=7, translate=0.1, scale=(0.9, 1.1)))
    out["affine augmentation: pixel moments"] = _moments(train)
    kit.set_seed(0)
    _, out["step: batch norm, one-cycle"] = _train(kit.models.LighterNet(norm="batch"), mnist,
                                                   scheduler=kit.OneCycle(max_lr=0.1))
    kit.set_seed(0)
    teacher, out["callbacks: step schedule, EMA, L1, label smoothing"] = _train(
        kit.models.PoolAt5Net(), mnist, scheduler=kit.StepLR(step_size=1, gamma=0.5), label_smoothing=0.1,
        callbacks=[kit.EMA(0.99), kit.L1(1e-5)])
    kit.set_seed(0)
    _, out["distillation"] = _train(kit.models.PoolAt5Net(), mnist, callbacks=[kit.Distillation(teacher.model)])
    kit.set_seed(0)
    _, out["crop and flip, group norm, adam"] = _train(
        kit.models.NormNet("group"), (rgb, rgb), augment=kit.Augment(crop_padding=4, hflip=True), optimizer="adam",
        lr=0.003)
    x = torch.linspace(-1, 1, 2 * 28 * 28).view(2, 1, 28, 28)
    for name in ("SetupNet", "SkeletonNet", "LighterNet", "GapNet", "CapacityNet", "PoolAt5Net", "CompactNet"):
        kit.set_seed(0)
        model = getattr(kit.models, name)().eval()
        with torch.no_grad():
            out[f"initial weights: {name}"] = [round(float(model(x).sum()), 6), kit.count_parameters(model)]
    return out


def _changed(got: dict, golden: dict) -> list[str]:
    return [name for name, values in got.items() if name not in golden or len(values) != len(golden[name]) or
            any(abs(a - b) > TOLERANCE * max(abs(b), 1e-3) for a, b in zip(values, golden[name]))]


def test_training_computes_what_the_reports_were_made_with(mnist_root):
    got = scenarios(mnist_root)
    if os.environ.get("KIT_UPDATE_FINGERPRINTS") == "1":
        GOLDEN.write_text(json.dumps({"numbers": NUMBERS, "scenarios": got}, indent=1) + "\n")
        pytest.skip(f"wrote {GOLDEN.name}")
    golden = json.loads(GOLDEN.read_text())
    changed = _changed(got, golden["scenarios"])
    assert not changed, (
        f"training now computes other numbers ({', '.join(changed)}). If that is meant: bump kit.record.NUMBERS "
        f"(now {NUMBERS}), run the reports again and write new fingerprints (see this module's docstring)")
    assert golden["numbers"] == NUMBERS, "the fingerprints were written for another NUMBERS: write them again"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="AVX2 kernels are x86's")
def test_they_hold_with_avx2_kernels(mnist_root, tmp_path):
    """The same scenarios in a process that runs the AVX2 kernels (the variables act before torch loads them)."""
    out = tmp_path / "avx2.json"
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_fingerprints import scenarios; "
            "json.dump(scenarios(sys.argv[2]), open(sys.argv[3], 'w'))")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(mnist_root), str(out)],
                   env={**os.environ, **AVX2}, check=True, timeout=300)
    changed = _changed(json.loads(out.read_text()), json.loads(GOLDEN.read_text())["scenarios"])
    assert not changed, f"with AVX2 kernels, training computes other numbers: {', '.join(changed)}"


def test_a_model_with_parameters_of_two_kinds_is_counted_whole():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert kit.count_parameters(model) == 10 and kit.count_parameters(model, trainable_only=False) == 26
