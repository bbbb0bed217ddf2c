import re
from pathlib import Path

import matplotlib
import pytest
import torch
from nbval.plugin import get_sanitize_patterns

from kit import models, plots
from kit.history import EpochRecord, History, Misclassified
from kit.models import CompactNet, count_parameters
from kit.summary import COLUMNS, summary

# Every model the course prints a summary of, with the input its notebook gives it.
COURSE_MODELS = {
    "SetupNet": (models.SetupNet, (1, 28, 28)), "SkeletonNet": (models.SkeletonNet, (1, 28, 28)),
    "LighterNet": (lambda: models.LighterNet(norm="batch", dropout=0.05), (1, 28, 28)),
    "GapNet": (models.GapNet, (1, 28, 28)), "CapacityNet": (models.CapacityNet, (1, 28, 28)),
    "PoolAt5Net": (models.PoolAt5Net, (1, 28, 28)), "CompactNet": (CompactNet, (1, 28, 28)),
    "NormNet": (lambda: models.NormNet("group"), (3, 32, 32)),
    "Teacher": (lambda: models.Teacher(1, 10), (1, 28, 28)), "Student": (lambda: models.Student(1, 10), (1, 28, 28)),
}
NBVAL_SANITIZE = Path(__file__).parent / "nbval_sanitize.cfg"


def compared(text: str) -> str:
    """`text` as the nbval run of reports/ compares it (after tests/nbval_sanitize.cfg's replacements)."""
    for regex, replace in get_sanitize_patterns(NBVAL_SANITIZE.read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_curves_returns_and_saves_a_figure(tmp_path):
    h = History([EpochRecord(i, 1 / i, 90 + i, 1 / i, 95 + i, 0.1, 1.0) for i in (1, 2, 3)])
    fig = plots.curves(h, "toy", path=tmp_path / "out" / "curves.png")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    assert "best test 98.00% (epoch 3)" in fig.axes[1].get_title()
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_sample_grid_has_labels(toy, tmp_path):
    fig = plots.samples(toy, n=10, columns=5, path=tmp_path / "s.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:3] == ["c0", "c1", "c2"] and (tmp_path / "s.png").exists()


def test_misclassified_grid_says_predicted_and_true():
    m = Misclassified(torch.zeros(3, 3, 8, 8), torch.tensor([1, 2, 0]), torch.tensor([0, 0, 1]),
                      ("cat", "dog", "eel"), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    fig = plots.misclassified(m)
    assert fig.axes[0].get_title() == "dog (true cat)"


def test_misclassified_takes_the_trainer_that_knows_its_test_data(toy):
    import kit

    train, test = kit.make_loaders((toy, toy), batch_size=16, device="cpu")
    model = torch.nn.Sequential(kit.ConvBlock(1, 8, padding=1), kit.ConvBlock(8, 8), kit.GapHead(8, 4))
    trainer = kit.Trainer(model, train, test, epochs=1, verbose=False)
    fig = plots.misclassified(trainer, n=6)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert 0 < len(titles) <= 6 and all("(true c" in t for t in titles)


def test_summary_counts_what_count_parameters_counts():
    model = CompactNet()
    s = summary(model, (1, 28, 28))
    assert s.trainable_params == count_parameters(model) == 7416
    assert "ConvBlock" in str(s)


@pytest.mark.parametrize("name", COURSE_MODELS)
def test_a_course_models_summary_fits_a_notebooks_width(name):
    make, input_size = COURSE_MODELS[name]
    lines = str(summary(make(), input_size)).splitlines()
    assert max(map(len, lines)) <= 100, f"{name}'s summary is {max(map(len, lines))} characters wide"
    header = next(line for line in lines if line.startswith("Layer"))
    assert header.split("  ")[0] == "Layer (type (var_name))" and "Kernel Shape" in header


def test_the_fitted_summary_says_what_torchinfos_own_table_says_only_padded_less():
    from torchinfo import summary as torchinfo_summary

    model = models.LighterNet(norm="batch")
    fitted = str(summary(model, (1, 28, 28)))
    wide = str(torchinfo_summary(model, input_size=(1, 1, 28, 28), device="cpu", verbose=0,
                                 col_names=COLUMNS, row_settings=("var_names",)))
    assert max(map(len, wide.splitlines())) == 140 > max(map(len, fitted.splitlines()))
    assert compared(fitted) == compared(wide)  # so a report made with the wide table still checks
    other = str(summary(models.LighterNet(norm="group"), (1, 28, 28)))
    assert compared(other) != compared(wide)  # and the comparison still sees a different model


def test_curves_show_the_learning_rate_only_when_it_changes():
    h = History([EpochRecord(i, 1 / i, 90 + i, 1 / i, 95 + i, 0.1 / 10 ** (i // 2), 1.0) for i in (1, 2, 3)])
    fig = plots.curves(h)
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "learning rate"


def test_batch_shows_what_the_model_sees(toy):
    from kit.loaders import DeviceLoader
    from kit.transforms import Augment

    loader = DeviceLoader(toy, 16, train=True, mean=(0.5,), std=(0.25,), augment=Augment(rotation=10))
    fig = plots.batch(loader, n=8, columns=4)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 8 and min(float(i.min()) for i in images) >= 0  # un-normalised back to pixels
    assert fig.axes[0].get_title() in toy.classes


def test_compare_draws_one_line_per_run_for_train_and_test():
    runs = {name: History([EpochRecord(i, 1.0, 80 + i + k, 1.0, 78 + i + k, 0.1, 1.0) for i in (1, 2)])
            for k, name in enumerate(("batch", "group", "layer"))}
    fig = plots.compare(runs, "norms")
    assert [ax.get_title() for ax in fig.axes] == ["train accuracy", "test accuracy"]
    assert [len(ax.lines) for ax in fig.axes] == [3, 3]
    assert fig.axes[1].get_legend().get_texts()[2].get_text() == "layer"
