import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import kit.train
from conftest import make_imageset
from kit.callbacks import EMA, L1, Callback, Distillation, OneCycle, Plateau, StepLR
from kit.history import EpochRecord, History, NonFiniteLossError
from kit.loaders import make_loaders
from kit.models import ConvBlock, GapHead
from kit.train import Trainer, _fp32_norms, default_channels_last, pick_device, set_seed


def tiny_model(classes=4):
    return nn.Sequential(ConvBlock(1, 8, padding=1), ConvBlock(8, 8), GapHead(8, classes))


def loaders(n=128, **kw):
    d = make_imageset(n=n)
    return make_loaders((d, d), batch_size=16, test_batch_size=64, device="cpu", **kw)


def trainer(model=None, **kw):
    set_seed(0)
    train, test = loaders()
    return Trainer(model or tiny_model(), train, test, verbose=False, **{"lr": 0.05, "epochs": 3, **kw})


def test_trainer_lowers_the_loss_on_a_tiny_problem():
    h = trainer(epochs=6).fit()
    assert h[-1].train_loss < 0.7 * h[0].train_loss
    assert h[-1].test_acc > 60


def test_history_holds_every_epoch_and_field():
    h = trainer(epochs=2).fit()
    assert len(h) == 2 and [r.epoch for r in h.epochs] == [1, 2]
    r = h[0]
    assert set(vars(r)) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}
    assert 0 <= r.train_acc <= 100 and 0 <= r.test_acc <= 100 and r.seconds > 0 and r.lr == 0.05


def test_history_best_last_and_round_trip(tmp_path):
    h = History([EpochRecord(i, 1 / i, 90 + i, 2 / i, a, 0.1, 1.0) for i, a in ((1, 98.0), (2, 99.5), (3, 99.5))])
    assert h.best("test_acc") == (99.5, 2)  # the first of a tie
    assert h.best("test_loss") == (pytest.approx(2 / 3), 3)
    assert h.last(2) == [99.5, 99.5]
    h.save(tmp_path / "h.json")
    assert History.load(tmp_path / "h.json") == h
    assert not list(tmp_path.glob("*.tmp"))
    assert "| 2 |" in h._repr_markdown_()
    with pytest.raises(ValueError, match="empty"):
        History().best()


class NaNAfter(nn.Module):
    """Outputs NaN from the given training call on, as a diverging model would."""

    def __init__(self, after: int, value=math.nan, in_testing=False):
        super().__init__()
        self.inner, self.after, self.calls, self.value, self.in_testing = tiny_model(), after, 0, value, in_testing
        self.looked = False

    def forward(self, x):
        y = self.inner(x)
        if not self.looked and not self.training:  # the Trainer's one look at the first batch
            self.looked = True
            return y
        if self.training != self.in_testing:
            self.calls += 1
        return y * self.value if self.calls >= self.after else y


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss_stops_training_and_names_its_epoch_and_step(value):
    train, test = loaders()
    t = Trainer(NaNAfter(11, value), train, test, device="cpu", verbose=False, epochs=3)
    with pytest.raises(NonFiniteLossError) as e:
        t.fit()
    # 8 training steps per epoch: training call 11 is epoch 2, step 3.
    assert (e.value.phase, e.value.epoch, e.value.step) == ("training", 2, 3)
    assert "epoch 2, step 3" in str(e.value) and "learning rate" in str(e.value)
    assert len(t.history) == 1  # nothing is recorded for the broken epoch


def test_the_guard_names_the_first_bad_step_even_when_it_looks_later(monkeypatch):
    monkeypatch.setattr(kit.train, "CHECK_EVERY", 5)
    train, test = loaders(n=320)  # 20 steps an epoch: the host looks at steps 5, 10, 15, 20
    t = Trainer(NaNAfter(7), train, test, device="cpu", verbose=False, epochs=1)
    with pytest.raises(NonFiniteLossError) as e:
        t.fit()
    assert (e.value.epoch, e.value.step) == (1, 7)


def test_nan_in_testing_is_never_reported_as_accuracy():
    train, test = loaders()
    t = Trainer(NaNAfter(1, in_testing=True), train, test, device="cpu", verbose=False)
    with pytest.raises(NonFiniteLossError, match="test loss is nan at epoch 1"):
        t.fit()
    assert len(t.history) == 0


def test_a_huge_learning_rate_is_caught():
    train, test = loaders()
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 4))
    t = Trainer(model, train, test, device="cpu", verbose=False, lr=1e38)
    with pytest.raises(NonFiniteLossError):
        t.fit()


def test_the_training_step_never_waits_for_the_device(monkeypatch):
    """The host reads device values once per CHECK_EVERY steps and at the end of an epoch, not every step."""
    monkeypatch.setattr(kit.train, "CHECK_EVERY", 10)
    t = trainer(epochs=1)
    t.train_loader = make_loaders((make_imageset(n=640),) * 2, batch_size=16, device="cpu")[0]  # 40 steps
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name: (reads.append(_n), _o(self, *a))[1])
    t._checked = True  # the one look at a fit's first batch is not part of the step
    t.train_epoch(1)
    assert reads.count("tolist") == 5 and len(reads) == 5  # steps 10, 20, 30, 40 and the end of the epoch


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizers(optimizer):
    t = trainer(optimizer=optimizer, lr=0.01, epochs=1)
    assert type(t.optimizer).__name__ == {"sgd": "SGD", "adam": "Adam"}[optimizer]
    t.fit()


def test_the_log_shows_the_rate_each_epoch_trained_with():
    h = trainer(scheduler=StepLR(step_size=1, gamma=0.5), epochs=3).fit()
    assert h.column("lr") == pytest.approx([0.05, 0.025, 0.0125])


def test_onecycle_rises_then_falls():
    t = trainer(scheduler=OneCycle(max_lr=0.2), epochs=4)
    lrs = t.fit().column("lr")
    assert lrs[0] == pytest.approx(0.2 / 25) and lrs[1] > lrs[0] and lrs[1] > lrs[2] > lrs[3]
    assert t.current_lr < 0.001  # ends far below where it began


def test_plateau_cuts_the_rate_when_the_test_loss_stalls():
    plateau = Plateau(patience=0, factor=0.5)
    t = trainer(scheduler=plateau, epochs=1)
    t.fit()  # wired into the loop
    for _ in range(2):
        plateau.after_epoch(t, 1.0)  # a test loss that no longer improves
    assert t.current_lr == pytest.approx(0.025)


def test_unknown_names_are_clear():
    with pytest.raises(ValueError, match="choose one of .'sgd', 'adam'."):
        trainer(optimizer="rmsprop")
    with pytest.raises(TypeError, match="not a kit callback"):
        trainer(scheduler="step")
    with pytest.raises(ValueError, match="EMA decay"):
        EMA(1.5)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_epochs_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match="epochs"):
        trainer(epochs=bad)
    t = trainer(epochs=1)
    with pytest.raises(ValueError, match="at least 1"):
        t.fit(bad)
    assert len(t.history) == 0


def test_a_batch_on_another_device_is_an_error_that_says_so():
    train, test = loaders()
    train.device = torch.device("meta")  # as if built for another device
    with pytest.raises(ValueError, match="train loader puts its batches on meta"):
        Trainer(tiny_model(), train, test, device="cpu")


def test_the_model_follows_the_loaders_device_by_default():
    train, test = loaders()
    assert Trainer(tiny_model(), train, test).device == train.device == torch.device("cpu")


def test_labels_the_model_cannot_score_are_named():
    t = trainer(tiny_model(classes=3))  # the data has 4 classes
    with pytest.raises(ValueError, match="labels run from 0 to 3, but the model gives 3 class scores"):
        t.fit()


def test_a_model_without_a_score_per_class_is_named():
    t = trainer(nn.Sequential(ConvBlock(1, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(0)))
    with pytest.raises(ValueError, match="one row of class scores per image"):
        t.fit()


def test_regularisers_raise_the_training_loss():
    plain = trainer(epochs=1).train_epoch(1)[0]
    assert trainer(epochs=1, callbacks=[L1(1e-2)]).train_epoch(1)[0] > plain
    assert trainer(epochs=1, label_smoothing=0.2).train_epoch(1)[0] > plain


def test_weight_decay_is_l2():
    assert trainer(weight_decay=5e-4).optimizer.param_groups[0]["weight_decay"] == 5e-4


def test_ema_weights_are_used_for_testing_and_follow_the_model_early():
    t = trainer(callbacks=[EMA(0.999)], epochs=1)
    t.fit()
    assert t.eval_model is not t.model
    live = dict(t.model.named_parameters())
    gap = max((p - live[n]).abs().max().item() for n, p in t.eval_model.named_parameters())
    assert 0 < gap < 0.1  # with warm-up, 8 steps in, the average is near the weights, not the initial ones
    assert t.history[0].test_acc > 30  # not the random initial weights' chance level


def test_ema_without_warm_up_stays_near_the_initial_weights():
    set_seed(0)
    start = [p.detach().clone() for p in tiny_model().parameters()]
    t = trainer(callbacks=[EMA(0.999, warmup=False)], epochs=1)
    t.fit()
    drift = max((a - b).abs().max().item() for a, b in zip(t.eval_model.parameters(), start))
    assert drift < 0.01


def test_a_custom_callback_plugs_in():
    class CountSteps(Callback):
        def begin(self, trainer):
            self.steps, self.epochs = 0, 0

        def after_step(self, trainer):
            self.steps += 1

        def after_epoch(self, trainer, test_loss):
            self.epochs += 1

    c = CountSteps()
    trainer(callbacks=[c], epochs=2).fit()
    assert (c.steps, c.epochs) == (16, 2)


def test_misclassified_collects_wrong_answers_with_what_shows_them():
    t = trainer(epochs=1)
    m = t.misclassified(limit=7)
    assert 0 < len(m) <= 7 and m.images.shape[1:] == (1, 12, 12)
    assert (m.predicted != m.target).all()
    assert m.classes == ("c0", "c1", "c2", "c3") and len(m.mean) == 1


def test_set_seed_makes_runs_repeat():
    a, b = trainer(epochs=1).fit(), trainer(epochs=1).fit()
    assert a[0].train_loss == b[0].train_loss and a[0].test_acc == b[0].test_acc


def test_deterministic_seed_flag():
    set_seed(0, deterministic=True)
    try:
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert pick_device(None) == pick_device("auto")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")


def wide_conv(t):
    """A convolution with more than one input channel: for one, both memory formats are the same."""
    return next(m for m in t.model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)


def test_cpu_defaults_are_fp32_without_a_graph_channels_last_on_one_thread_only():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as `kit run` trains
        t = trainer()
        assert (t.channels_last, t.amp_dtype, t.graph, t.compiled) == (True, None, False, False)
        assert wide_conv(t).weight.is_contiguous(memory_format=torch.channels_last)
        torch.set_num_threads(2)  # where NCHW measured faster
        t = trainer()
        assert (t.channels_last, t.amp_dtype, t.graph, t.compiled) == (False, None, False, False)
        assert not wide_conv(t).weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        torch.set_num_threads(threads)
    assert default_channels_last(torch.device("cuda")) and not default_channels_last(torch.device("mps"))
    for compiled in (False, True):  # the trainer's own graph, around a compiled model or not, is CUDA's
        with pytest.raises(ValueError, match="CUDA graph"):
            trainer(graph=True, compile=compiled)


def test_channels_last_off_gives_the_same_training():
    a, b = trainer(epochs=1).fit(), trainer(epochs=1, channels_last=False).fit()
    assert a[0].train_loss == pytest.approx(b[0].train_loss, rel=1e-4)


def test_norms_stay_fp32_under_autocast():
    model = tiny_model()
    _fp32_norms(model)
    _fp32_norms(model)  # once only, however often a module is prepared
    seen = []
    model[0].norm.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 1, 8, 8))
    assert seen == [torch.float32]


def test_epoch_lines_are_printed_with_the_run_name(capsys):
    train, test = loaders()
    Trainer(tiny_model(), train, test, epochs=1, name="seed 2").fit()
    assert "seed 2 · epoch  1  train loss" in capsys.readouterr().out


def test_the_trainers_a_process_fitted_are_remembered_until_forgotten():
    Trainer.forget_fitted()
    a, b = trainer(epochs=1), trainer(epochs=1)
    a.fit()
    assert Trainer.fitted() == [a]
    b.fit()
    a.fit()  # fitted again: still once
    assert Trainer.fitted() == [a, b]
    Trainer.forget_fitted()
    assert Trainer.fitted() == []


# --- knowledge distillation ---

def test_distillation_with_alpha_0_is_the_plain_loss():
    teacher = tiny_model()
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 4, (8,))
    logits = torch.randn(8, 4)
    plain = torch.nn.functional.cross_entropy(logits, y)
    t = trainer()
    assert torch.allclose(Distillation(teacher, alpha=0.0).loss(t, plain, logits, x, y), plain)
    # with alpha 1 only the teacher counts: a student that copies the teacher has zero loss
    with torch.no_grad():
        same = teacher.eval()(x)
    assert Distillation(teacher, temperature=3.0, alpha=1.0).loss(t, plain, same, x, y).abs() < 1e-6


def test_a_student_learns_from_a_frozen_teacher():
    set_seed(0)
    train, test = loaders()
    teacher = tiny_model()
    Trainer(teacher, train, test, epochs=4, lr=0.05, verbose=False).fit()
    before = [p.detach().clone() for p in teacher.parameters()]
    student = Trainer(tiny_model(), train, test, epochs=4, lr=0.05, verbose=False,
                      callbacks=[Distillation(teacher, temperature=4.0, alpha=0.5)])
    h = student.fit()
    assert h[-1].train_loss < h[0].train_loss and h[-1].test_acc > 50
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # the teacher never moves
    assert not teacher.training


def test_distillation_rejects_nonsense():
    with pytest.raises(ValueError, match="temperature > 0 and alpha in"):
        Distillation(tiny_model(), temperature=0)
    with pytest.raises(ValueError, match="alpha in"):
        Distillation(tiny_model(), alpha=1.5)


COMPILED_AND_EAGER = """
import json, sys
sys.path.insert(0, {tests!r})
from torch import nn
import kit
from conftest import make_imageset
data, out = make_imageset(128), {{}}
for compile in (False, True):
    kit.set_seed(0)
    train, test = kit.make_loaders((data, data), batch_size=32, device="cpu", seed=0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    t = kit.Trainer(model, train, test, epochs=2, lr=0.05, compile=compile, verbose=False, progress=False)
    out[str(compile)] = [t.fit()[-1].train_loss, t.compiled]
print(json.dumps(out))
"""


def test_a_compiled_step_trains_like_the_eager_one_and_a_cpu_hears_nothing_of_cuda(tmp_path):
    tests = str(Path(__file__).parent)
    # a CUDA toolkit folder on a machine without a GPU: torch's extension loader would log "No CUDA runtime is found";
    # inductor's caches of its own, so no kernel compiled by another process (with other CPU kernels forced, say) is used
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", COMPILED_AND_EAGER.format(tests=tests)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CUDA" not in done.stderr, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (eager, _), (compiled, was_compiled) = out["False"], out["True"]
    assert was_compiled and math.isclose(eager, compiled, rel_tol=1e-3), (eager, compiled)


def test_a_step_that_cannot_be_captured_trains_on_eager_and_says_why(monkeypatch, capsys):
    """A capture that fails (a callback reading a tensor as a number syncs with the host, which a CUDA graph
    refuses) leaves nothing run: the trainer says why and trains on with the eager step, to the eager numbers."""
    def refuse(graph):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    streams = []
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", refuse)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: "the stream before")
    monkeypatch.setattr(torch.cuda, "set_stream", streams.append)
    t = trainer(epochs=2, name="tiny")
    t.graph, t._warmup = True, 0  # as on a GPU, past the warm-up steps
    captured_try = t.fit()
    eager = trainer(epochs=2).fit()
    assert [r.train_loss for r in captured_try] == [r.train_loss for r in eager]
    assert [r.test_acc for r in captured_try] == [r.test_acc for r in eager]
    assert t.graph is False  # what the record will say
    assert streams == ["the stream before"]  # put back: the failed capture's own stream would stay current
    err = capsys.readouterr().err
    assert "could not be captured as a CUDA graph (CUDA error: operation not permitted when stream is capturing)" \
        in err and "tiny goes on with the eager step" in err and err.count("could not be captured") == 1
