import math

import pytest
import torch
from torch import nn

from kit.loaders import make_loaders
from kit.models import ConvBlock, GapHead
from kit.train import EpochRecord, History, NonFiniteLossError, Trainer, _fp32_norms, pick_device, set_seed

from conftest import make_imageset


def tiny_model(classes=4):
    return nn.Sequential(ConvBlock(1, 8, padding=1), ConvBlock(8, 8), GapHead(8, classes))


def loaders(n=128, **kw):
    d = make_imageset(n=n)
    return make_loaders((d, d), batch_size=16, test_batch_size=64, **kw)


def trainer(**kw):
    set_seed(0)
    train, test = loaders()
    return Trainer(tiny_model(), train, test, device="cpu", verbose=False, **{"lr": 0.05, "epochs": 3, **kw})


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
    """Outputs NaN from the given call on, as a diverging model would."""

    def __init__(self, after: int, value=math.nan):
        super().__init__()
        self.inner, self.after, self.calls, self.value = tiny_model(), after, 0, value

    def forward(self, x):
        self.calls += 1
        y = self.inner(x)
        return y * self.value if self.calls >= self.after else y


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss_stops_training_at_once(value):
    train, test = loaders()
    t = Trainer(NaNAfter(11, value), train, test, device="cpu", verbose=False, epochs=3)
    with pytest.raises(NonFiniteLossError) as e:
        t.fit()
    # 8 training steps per epoch plus 2 test batches: call 11 is epoch 2, step 1.
    assert (e.value.phase, e.value.epoch, e.value.step) == ("training", 2, 1)
    assert "epoch 2, step 1" in str(e.value) and "learning rate" in str(e.value)
    assert len(t.history) == 1  # nothing is recorded for the broken epoch


def test_nan_in_testing_is_never_reported_as_accuracy():
    train, test = loaders()
    t = Trainer(NaNAfter(9), train, test, device="cpu", verbose=False)
    with pytest.raises(NonFiniteLossError, match="test loss is nan at epoch 1"):
        t.fit()
    assert len(t.history) == 0


def test_a_huge_learning_rate_is_caught():
    train, test = loaders()
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 4))
    t = Trainer(model, train, test, device="cpu", verbose=False, lr=1e38)
    with pytest.raises(NonFiniteLossError):
        t.fit()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizers(optimizer):
    t = trainer(optimizer=optimizer, lr=0.01, epochs=1)
    assert type(t.optimizer).__name__ == {"sgd": "SGD", "adam": "Adam"}[optimizer]
    t.fit()


def test_step_scheduler_cuts_the_rate():
    h = trainer(scheduler="step", scheduler_args={"step_size": 1, "gamma": 0.5}, epochs=3).fit()
    assert h.column("lr") == pytest.approx([0.025, 0.0125, 0.00625])


def test_onecycle_scheduler_rises_then_falls():
    t = trainer(scheduler="onecycle", scheduler_args={"max_lr": 0.2}, epochs=3)
    lrs = t.fit().column("lr")
    assert 0.2 >= lrs[0] > lrs[1] > lrs[2] and lrs[2] < 0.01


def test_plateau_scheduler_steps_on_test_loss():
    t = trainer(scheduler="plateau", scheduler_args={"patience": 0, "factor": 0.5}, epochs=2)
    t.fit()
    assert type(t.scheduler).__name__ == "ReduceLROnPlateau"


def test_unknown_names_are_clear():
    with pytest.raises(ValueError, match="choose one of .'sgd', 'adam'."):
        trainer(optimizer="rmsprop")
    with pytest.raises(ValueError, match="'step', 'onecycle', 'plateau'"):
        trainer(scheduler="cosine")
    with pytest.raises(ValueError, match="ema_decay"):
        trainer(ema_decay=1.5)


def test_regularisers_raise_the_training_loss():
    plain = trainer(epochs=1).train_epoch(1)[0]
    assert trainer(epochs=1, l1=1e-2).train_epoch(1)[0] > plain
    assert trainer(epochs=1, label_smoothing=0.2).train_epoch(1)[0] > plain


def test_weight_decay_is_l2():
    assert trainer(weight_decay=5e-4).optimizer.param_groups[0]["weight_decay"] == 5e-4


def test_ema_weights_are_used_for_testing():
    t = trainer(ema_decay=0.9, epochs=1)
    t.fit()
    assert t.eval_model is not t.model
    live = dict(t.model.named_parameters())
    assert any(not torch.equal(p, live[n]) for n, p in t.eval_model.named_parameters())


def test_misclassified_collects_wrong_answers():
    t = trainer(epochs=1, lr=0.0)  # untrained: plenty of mistakes
    m = t.misclassified(limit=7)
    assert len(m) == 7 and m.images.shape == (7, 1, 12, 12)
    assert (m.predicted != m.target).all()


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
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")


def test_mixed_precision_is_off_on_cpu_and_norms_stay_fp32():
    assert trainer(amp=None).amp_dtype is None
    model = tiny_model()
    _fp32_norms(model)
    seen = []
    model[0].norm.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 1, 8, 8))
    assert seen == [torch.float32]


def test_epoch_lines_are_printed(capsys):
    train, test = loaders()
    Trainer(tiny_model(), train, test, device="cpu", epochs=1).fit()
    assert "epoch  1  train loss" in capsys.readouterr().out


def test_scheduler_args_are_not_modified():
    args = {"max_lr": 0.2}
    trainer(scheduler="onecycle", scheduler_args=args)
    assert args == {"max_lr": 0.2}


# --- knowledge distillation ---

def test_distillation_with_alpha_0_is_plain_cross_entropy():
    from kit.train import Distillation

    teacher = tiny_model()
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 4, (8,))
    logits = torch.randn(8, 4)
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(Distillation(teacher, alpha=0.0).loss(logits, x, y), plain)
    # with alpha 1 only the teacher counts: a student that copies the teacher has zero loss
    with torch.no_grad():
        same = teacher(x)
    assert Distillation(teacher, temperature=3.0, alpha=1.0).loss(same, x, y).abs() < 1e-6


def test_a_student_learns_from_a_frozen_teacher():
    from kit.train import Distillation

    set_seed(0)
    train, test = loaders()
    teacher = tiny_model()
    Trainer(teacher, train, test, epochs=4, lr=0.05, device="cpu", verbose=False).fit()
    before = [p.detach().clone() for p in teacher.parameters()]
    student = Trainer(tiny_model(), train, test, epochs=4, lr=0.05, device="cpu", verbose=False,
                      distillation=Distillation(teacher, temperature=4.0, alpha=0.5))
    h = student.fit()
    assert h[-1].train_loss < h[0].train_loss and h[-1].test_acc > 50
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # the teacher never moves
    assert not teacher.training


def test_distillation_rejects_nonsense():
    from kit.train import Distillation

    with pytest.raises(ValueError, match="temperature > 0 and alpha in"):
        Distillation(tiny_model(), temperature=0)
    with pytest.raises(ValueError, match="alpha in"):
        Distillation(tiny_model(), alpha=1.5)
