import matplotlib
import torch

from kit import plots
from kit.models import CompactNet, count_parameters
from kit.summary import summary
from kit.train import EpochRecord, History, Misclassified


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
    m = Misclassified(torch.zeros(3, 3, 8, 8), torch.tensor([1, 2, 0]), torch.tensor([0, 0, 1]))
    fig = plots.misclassified(m, ["cat", "dog", "eel"], (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert fig.axes[0].get_title() == "dog (true cat)"


def test_summary_counts_what_count_parameters_counts():
    model = CompactNet()
    s = summary(model, (1, 28, 28))
    assert s.trainable_params == count_parameters(model) == 7416
    assert "ConvBlock" in str(s)
