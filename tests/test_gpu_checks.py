"""benchmarks/gpu_checks.py's measure of a broken captured step, tried on the CPU: rounding stays well inside
its limit, a step that computes something else lands well outside it. And benchmarks/gpu_run.sh's choice of CUDA
MPS for the batch, with stand-ins for python and the MPS control daemon."""
import sys
from pathlib import Path

import torch

import kit
from kit.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_checks  # noqa: E402

LIMIT = gpu_checks.GAP_LIMIT


class Doubled(Callback):
    """Gradients twice what they should be: what a step that adds to stale gradients computes."""

    def loss(self, trainer, loss, logits, x, y):
        return 2 * loss


class FrozenMomentum(Callback):
    """The momentum of the third step for the rest of the run: what a captured step whose momentum was a number
    computed (its graph keeps the number it captured while one-cycle moves the momentum)."""

    steps = 0

    def after_step(self, trainer):
        self.steps += 1
        group = trainer.optimizer.param_groups[0]
        if self.steps == 3:
            self.momentum = group["momentum"]
        if self.steps >= 3:
            group["momentum"] = self.momentum


class EveryOther(Callback):
    """Every other step trains nothing: what a step that skips its update computes."""

    steps = 0

    def loss(self, trainer, loss, logits, x, y):
        self.steps += 1
        return loss * (self.steps % 2)


def some_steps(mnist_root, threads=1, callbacks=()):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kit.set_seed(0)
        train = kit.load("mnist", "train", mnist_root).subset(128 * gpu_checks.STEPS)
        test = kit.load("mnist", "test", mnist_root).subset(256)
        loaders = kit.make_loaders((train, test), device="cpu", seed=0, batch_size=128)
        t = kit.Trainer(gpu_checks.solution_model()[0](), *loaders, epochs=1, lr=0.05, scheduler=kit.OneCycle(),
                        callbacks=list(callbacks), channels_last=True, verbose=False, progress=False)
        start = gpu_checks.state(t.model)
        t.train_epoch(1)
        return start, gpu_checks.state(t.model)
    finally:
        torch.set_num_threads(before)


def test_update_gap_tells_rounding_from_a_broken_step(mnist_root):
    start, reference = some_steps(mnist_root)
    assert gpu_checks.update_gap(start, reference, some_steps(mnist_root)[1]) == 0  # the same run, bit for bit
    rounding = gpu_checks.update_gap(start, reference, some_steps(mnist_root, threads=2)[1])  # sums in another order
    assert 0 < rounding < LIMIT / 4
    for broken in (Doubled(), EveryOther(), FrozenMomentum()):
        assert gpu_checks.update_gap(start, reference, some_steps(mnist_root, callbacks=[broken])[1]) > LIMIT * 1.5


def test_a_captured_rate_is_the_eager_one_to_float32s_precision():
    eager = 0.002475968399326312  # one-cycle's rate after ten steps, as an H200's eager and captured steps read it
    assert gpu_checks.same_rate(eager, 0.0024759683292359114, captured=True)
    assert not gpu_checks.same_rate(eager, 0.0024759683292359114, captured=False)  # eager against eager: exact
    assert gpu_checks.same_rate(eager, eager, captured=False)
    assert not gpu_checks.same_rate(eager, 0.0025, captured=True)  # a stale or other rate


def _gpu_run_batch(tmp_path, probe_ok: bool, **env) -> tuple[str, str]:
    """benchmarks/gpu_run.sh's batch phase with stand-ins for python and the MPS control daemon: what it asked of
    each (the stand-in python fails the MPS probe unless `probe_ok`)."""
    import os
    import subprocess

    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    # the stand-in `kit run` fails under MPS where FAIL_UNDER_MPS=1
    (bin_ / "python").write_text(f'#!/bin/bash\necho "$*${{CUDA_MPS_PIPE_DIRECTORY:+ (MPS)}}" >> {tmp_path}/python.log\n'
                                 f'[ "$1" = -c ] && exit {0 if probe_ok else 1}\n'
                                 '[ -n "$CUDA_MPS_PIPE_DIRECTORY" ] && [ "${FAIL_UNDER_MPS:-0}" = 1 ] && exit 1\n'
                                 'exit 0\n')
    (bin_ / "nvidia-cuda-mps-control").write_text(
        f'#!/bin/bash\nwhat="$*"; [ -z "$what" ] && read -r what\necho "$what $CUDA_MPS_PIPE_DIRECTORY" >> '
        f'{tmp_path}/mps.log\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(["bash", "benchmarks/gpu_run.sh", str(tmp_path / "out")], cwd=root, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}",
                                                      "PYTHON": "python", "PHASES": "batch",
                                                      "WORK": str(tmp_path / "work"), **env})
    assert done.returncode == 0, done.stderr
    mps = (tmp_path / "mps.log").read_text() if (tmp_path / "mps.log").exists() else ""
    return (tmp_path / "python.log").read_text(), mps


def test_the_gpu_batch_runs_under_mps_only_where_a_probe_reaches_the_gpu_through_it(tmp_path):
    calls, mps = _gpu_run_batch(tmp_path / "on", probe_ok=True)
    assert "-m kit run notebooks --device auto --jobs 16" in calls  # every notebook at once
    started, quit_ = mps.splitlines()
    assert started.startswith("-d /tmp/kit-mps.") and quit_ == "quit " + started.split()[1]  # quit when it ends
    calls, mps = _gpu_run_batch(tmp_path / "off", probe_ok=False)
    assert "-m kit run notebooks --device auto --jobs 8" in calls  # the probe failed: turns on the GPU, 8 at a time
    assert [line.split()[0] for line in mps.splitlines()] == ["-d", "quit"]
    calls, mps = _gpu_run_batch(tmp_path / "never", probe_ok=True, MPS="0")
    assert "--jobs 8" in calls and mps == ""
    # notebooks that fail under MPS run once more without it, and only they
    runs = [c for c in _gpu_run_batch(tmp_path / "retry", probe_ok=True, FAIL_UNDER_MPS="1")[0].splitlines()
            if c.startswith("-m kit run")]
    assert runs == ["-m kit run notebooks --device auto --jobs 16 --out {} (MPS)".format(tmp_path / "retry/work/reports"),
                    "-m kit run notebooks --device auto --jobs 8 --out {} --changed-only".format(
                        tmp_path / "retry/work/reports")]
    runs = [c for c in _gpu_run_batch(tmp_path / "once", probe_ok=True)[0].splitlines() if c.startswith("-m kit run")]
    assert len(runs) == 1  # a batch that passed under MPS runs once


def test_the_gpu_batch_can_run_one_folder_or_some_notebooks_reporting_where_the_main_command_would(tmp_path):
    import os
    import subprocess

    calls, _ = _gpu_run_batch(tmp_path / "folder", probe_ok=True, BATCH="notebooks/assignments/")
    assert "-m kit run notebooks/assignments --device auto --jobs 16 --out {} (MPS)".format(
        tmp_path / "folder/work/reports/assignments") in calls
    studies = "notebooks/assignments/distillation.ipynb notebooks/assignments/normalisation.ipynb"
    calls, _ = _gpu_run_batch(tmp_path / "studies", probe_ok=True, BATCH=studies)
    assert f"-m kit run {studies} --device auto --jobs 16 --out {tmp_path / 'studies/work/reports/assignments'}" in calls
    root = Path(__file__).resolve().parent.parent
    for batch, said in (("reports", "reports is not below notebooks/"),
                        ("notebooks/nowhere", "notebooks/nowhere: no such folder or notebook"),
                        ("notebooks/03_lighter.ipynb notebooks/assignments/distillation.ipynb",
                         "name one folder, or notebooks of one folder")):
        done = subprocess.run(["bash", "benchmarks/gpu_run.sh", str(tmp_path / "out")], cwd=root, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PHASES": "batch", "BATCH": batch,
                                                          "WORK": str(tmp_path / "bad")})
        assert done.returncode == 2 and f"BATCH: {said}" in done.stderr, done.stderr
        assert not (tmp_path / "out").exists()  # refused before anything was written
