"""The real-data smoke test: a ~7,400-parameter model, one epoch, full MNIST, CPU, device-resident path."""
import torch

from kit.callbacks import OneCycle
from kit.loaders import make_loaders
from kit.models import CompactNet, count_parameters
from kit.train import Trainer, set_seed


def test_compact_net_reaches_98_percent_after_one_epoch(mnist_root):
    set_seed(0)
    train, test = make_loaders("mnist", path="device", batch_size=128, root=mnist_root, device="cpu")
    model = CompactNet()
    assert count_parameters(model) < 8000
    t = Trainer(model, train, test, epochs=1, lr=0.05, scheduler=OneCycle(max_lr=0.1),
                device="cpu", verbose=False)
    history = t.fit()
    assert history[0].test_acc >= 98.0, history[0]
    assert torch.isfinite(torch.tensor(history[0].train_loss))
