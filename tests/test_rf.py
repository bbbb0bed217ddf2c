"""Receptive-field tables: the course's own tables, branches, dilation, and a gradient cross-check."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from kit.models import ConvBlock
from kit.rf import ReceptiveFieldError, receptive_field


def conv(i, o, k=3, p=0, **kw):
    return nn.Conv2d(i, o, k, padding=p, **kw)


def seed004_model():
    """The layers of seed 004's table: 32x32 input, 14 rows, final receptive field 68."""
    return nn.Sequential(
        conv(3, 8), nn.BatchNorm2d(8), nn.ReLU(),
        conv(8, 8), nn.ReLU(),
        conv(8, 8, 1), nn.MaxPool2d(2, 2),
        conv(8, 8, p=1), nn.ReLU(), conv(8, 8, p=1), nn.ReLU(), conv(8, 8, p=1), nn.ReLU(),
        conv(8, 8, 1), nn.MaxPool2d(2, 2),
        conv(8, 8, p=1), conv(8, 8, p=1), conv(8, 8, p=1),
        nn.AdaptiveAvgPool2d(1), conv(8, 10, 1), nn.Flatten(),
    )


SEED_004 = [  # n_in, r_in, j_in, padding, kernel, stride, n_out, r_out, j_out
    (32, 1, 1, 0, 3, 1, 30, 3, 1), (30, 3, 1, 0, 3, 1, 28, 5, 1), (28, 5, 1, 0, 1, 1, 28, 5, 1),
    (28, 5, 1, 0, 2, 2, 14, 6, 2), (14, 6, 2, 1, 3, 1, 14, 10, 2), (14, 10, 2, 1, 3, 1, 14, 14, 2),
    (14, 14, 2, 1, 3, 1, 14, 18, 2), (14, 18, 2, 0, 1, 1, 14, 18, 2), (14, 18, 2, 0, 2, 2, 7, 20, 4),
    (7, 20, 4, 1, 3, 1, 7, 28, 4), (7, 28, 4, 1, 3, 1, 7, 36, 4), (7, 36, 4, 1, 3, 1, 7, 44, 4),
    (7, 44, 4, 0, 7, 7, 1, 68, 28), (1, 68, 28, 0, 1, 1, 1, 68, 28),
]


def test_seed_004_table():
    table = receptive_field(seed004_model(), (3, 32, 32))
    cols = ("n_in", "r_in", "j_in", "padding", "kernel", "stride", "n_out", "r_out", "j_out")
    assert list(zip(*(table.column(c) for c in cols))) == SEED_004
    assert table.receptive_field == 68 and table.notes == []


def test_vgg16_as_drawn_in_the_course():
    from torchvision.models import vgg16

    table = receptive_field(vgg16(), (3, 224, 224))
    geometric = [r for r, kind in zip(table.column("r_out"), [row.kind for row in table.rows]) if kind != "adaptive pool"]
    assert geometric[:19] == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212, 404]
    assert table.rows[17].layer == "features.30" and table.rows[17].kind == "pool"
    assert table.receptive_field == 404


def test_dilated_convolution_uses_the_effective_kernel():
    model = nn.Sequential(conv(1, 4, 3, p=2, dilation=2), conv(4, 4, 3, stride=2), conv(4, 4, 3, dilation=3))
    table = receptive_field(model, (1, 32, 32))
    assert table.column("r_out") == [5, 7, 19]  # 1 + 4; 5 + 2; 7 + 6 * 2
    assert table.column("n_out") == [32, 15, 9]
    assert table.column("dilation") == [2, 1, 3]


class TwoBranches(nn.Module):
    """A 3x3 path and a 7x7 path over the same input, merged by add or cat."""

    def __init__(self, merge="add"):
        super().__init__()
        self.merge = merge
        self.small = conv(1, 4, 3, p=1)
        self.large = nn.Sequential(conv(1, 4, 3, p=1), conv(4, 4, 3, p=1), conv(4, 4, 3, p=1))
        self.after = conv(8 if merge == "cat" else 4, 4, 3, p=1)

    def forward(self, x):
        a, b = self.small(x), self.large(x)
        return self.after(torch.cat([a, b], 1) if self.merge == "cat" else a + b)


@pytest.mark.parametrize("merge", ["add", "cat"])
def test_branches_take_the_maximum(merge):
    table = receptive_field(TwoBranches(merge), (1, 20, 20))
    # Hook order would add the small branch to the large one: 3 + 2 + 2 + 2 + 2 = 11. The truth is 7 + 2 = 9.
    assert table.receptive_field == 9
    assert table.rows[-1].r_in == (7, 7)


class Strided(nn.Module):
    """Branches with different strides merged by add: the jump mismatch is reported."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(conv(1, 2, 3, p=1, stride=2), conv(2, 2, 1))
        self.b = nn.Sequential(nn.MaxPool2d(2), conv(1, 2, 1))

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_equal_jumps_merge_quietly():
    table = receptive_field(Strided(), (1, 8, 8))
    assert table.notes == [] and table.rows[-1].j_out == (2, 2)


class MismatchedJumps(nn.Module):
    """Two paths to a 6x6 map from an 11x11 input: a 6x6 kernel (jump 1) and a strided 1x1 (jump 2)."""

    def __init__(self):
        super().__init__()
        self.a = conv(1, 2, 6)
        self.b = conv(1, 2, 1, stride=2)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_mismatched_jumps_are_reported():
    table = receptive_field(MismatchedJumps(), (1, 11, 11))
    assert len(table.notes) == 1 and "different jumps [(1, 1), (2, 2)]" in table.notes[0]
    assert "different jumps" in table.to_markdown() and "note:" in str(table)


def test_unsupported_layers_are_an_error_not_a_guess():
    with pytest.raises(ReceptiveFieldError, match="changes the feature map in a way"):
        receptive_field(nn.Sequential(conv(1, 2), nn.Unflatten(1, (1, 2))), (1, 8, 8))


def test_residual_conv_block_merges_paths():
    model = nn.Sequential(ConvBlock(1, 4, padding=1), ConvBlock(4, 4, padding=1, residual=True))
    table = receptive_field(model, (1, 16, 16))
    assert table.receptive_field == 5 and len(table.rows) == 2


def test_asymmetric_kernels_and_strides_per_axis():
    table = receptive_field(nn.Sequential(nn.Conv2d(1, 2, (3, 1), stride=(1, 2)), nn.Conv2d(2, 2, (1, 5))), (1, 16, 16))
    assert table.rows[0].n_out == (14, 8) and table.rows[1].r_out == (3, 9)
    assert table.receptive_field == (3, 9)
    assert "| 3×1 |" in table.to_markdown() and "final receptive field: 3×9" in str(table)


def test_gap_and_adaptive_pooling_show_their_effective_kernel():
    table = receptive_field(nn.Sequential(conv(1, 2, 3), nn.AdaptiveAvgPool2d(2), conv(2, 2, 1), nn.AdaptiveMaxPool2d(1)),
                            (1, 10, 10))
    assert [(r.kind, r.kernel[0], r.stride[0]) for r in table.rows] == [
        ("conv", 3, 1), ("adaptive pool", 4, 4), ("conv", 1, 1), ("gap", 2, 2)]


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = conv(1, 4, 3)
        self.w = nn.Parameter(torch.randn(4, 4, 3, 3))

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(self.c(x), 2)
        x = torch.nn.functional.conv2d(x, self.w, padding=1)
        return x.mean((2, 3))


def test_functional_layers_and_mean_as_gap():
    table = receptive_field(FunctionalNet(), (1, 14, 14))
    assert [r.kind for r in table.rows] == ["conv", "pool", "conv", "gap"]
    assert table.column("r_out") == [3, 4, 8, 8 + 5 * 2]


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv(1, 2)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.stem(x))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor's value: fx cannot follow it
            return x
        return -x


def test_untraceable_model_names_the_module():
    with pytest.raises(ReceptiveFieldError, match=r"(?s)module 'gate' \(Gate\) broke the trace.*torch.where"):
        receptive_field(Untraceable(), (1, 8, 8))


def test_bad_input_size():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        receptive_field(seed004_model(), (32, 32))


def gradient_width(model: nn.Module, size: int) -> int:
    """Width of the input region that gets a gradient from the central output unit."""
    for p in model.parameters():
        nn.init.constant_(p, 0.1)  # all positive: no path cancels, ReLU-free models pass everything on
    x = torch.ones(1, 1, size, size, requires_grad=True)
    y = model(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    cols = (x.grad[0, 0].abs() > 0).any(0).nonzero()
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("model", [
    nn.Sequential(conv(1, 2), conv(2, 2), nn.AvgPool2d(2), conv(2, 2), conv(2, 2, 5)),
    nn.Sequential(conv(1, 2, 3, dilation=2), nn.AvgPool2d(3, 2), conv(2, 2, 3, stride=2), conv(2, 2, 3, dilation=3)),
    nn.Sequential(ConvBlock(1, 2, padding=1, norm="none", activation=nn.Identity), nn.AvgPool2d(2),
                  ConvBlock(2, 2, padding=1, norm="none", activation=nn.Identity, residual=True)),
], ids=["plain", "dilated-strided", "residual"])
def test_receptive_field_matches_the_gradient(model):
    size = 64
    table = receptive_field(model, (1, size, size))
    assert gradient_width(model, size) == table.receptive_field


def test_branch_gradient_agrees_with_the_maximum():
    model = TwoBranches("add")
    assert gradient_width(model, 32) == receptive_field(model, (1, 32, 32)).receptive_field == 9


def run_rf(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "kit", "rf", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_prints_vgg16_with_212_at_the_last_max_pool():
    done = run_rf("torchvision.models:vgg16", "--input", "3,224,224")
    assert done.returncode == 0, done.stderr
    assert "| 18 | features.30 | 14 | 196 | 16 | 0 | 2 | 2 | 1 | 7 | 212 | 32 |" in done.stdout
    assert "Final receptive field: **404**" in done.stdout


def test_cli_finds_a_model_on_pythonpath(tmp_path):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def tiny():\n    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3))\n"
        "class Bad(nn.Module):\n    def forward(self, x):\n        return x if x.sum() > 0 else -x\n"
        "NOT_A_MODEL = 3\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    done = run_rf("my_models:tiny", "--input", "1,8,8", env=env)
    assert done.returncode == 0 and "Final receptive field: **5**" in done.stdout
    bad = run_rf("my_models:Bad", "--input", "1,8,8", env=env)
    assert bad.returncode == 1 and "cannot trace Bad" in bad.stderr and not bad.stdout
    wrong = run_rf("my_models:NOT_A_MODEL", "--input", "1,8,8", env=env)
    assert wrong.returncode == 1 and "did not give a torch.nn.Module" in wrong.stderr
    assert run_rf("my_models:tiny", "--input", "8,8", env=env).returncode == 1


class TorchPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = conv(1, 2, 3, 1)

    def forward(self, x):
        return torch.max_pool2d(self.c(x), 3, 1, 1)  # keeps the size, widens the field


def test_torch_max_pool2d_is_followed_like_its_module():
    assert receptive_field(TorchPool(), (1, 8, 8)).receptive_field == 5


class TransposedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = conv(1, 2, 3, 1)
        self.w = nn.Parameter(torch.randn(2, 2, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv_transpose2d(self.c(x), self.w, padding=1)


@pytest.mark.parametrize("model, name", [
    (TransposedConv(), "conv_transpose2d"),
    (nn.Sequential(conv(1, 2), nn.ConvTranspose2d(2, 2, 3)), "ConvTranspose2d"),
    (nn.Sequential(conv(1, 2), nn.Upsample(scale_factor=2)), "Upsample"),
])
def test_layers_it_does_not_model_are_refused_by_name(model, name):
    with pytest.raises(ReceptiveFieldError, match=f"{name} is not a layer the receptive-field table covers"):
        receptive_field(model, (1, 8, 8))


def test_a_1d_model_is_refused_not_given_an_empty_table():
    with pytest.raises(ReceptiveFieldError, match="Conv1d is not a layer"):
        receptive_field(nn.Sequential(nn.Flatten(2), nn.Conv1d(1, 2, 3)), (1, 8, 8))


def test_a_1d_model_that_cannot_run_on_the_image_is_refused_by_name_in_one_message(capfd):
    with pytest.raises(ReceptiveFieldError, match="Conv1d is not a layer") as e:
        receptive_field(nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU()), (1, 28, 28))
    assert "Traceback" not in capfd.readouterr().err and len(str(e.value).splitlines()) == 1


def test_a_model_that_does_not_run_on_the_input_says_why_in_one_line(capfd):
    said = r"does not run on an input of \(3, 8, 8\) \(at layer '0'\): .*channels"
    with pytest.raises(ReceptiveFieldError, match=said) as e:
        receptive_field(nn.Sequential(conv(1, 2)), (3, 8, 8))
    assert capfd.readouterr().err == "" and len(str(e.value).splitlines()) == 1


class ViewHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = conv(1, 2, 3), nn.Linear(2 * 6 * 6, 10)

    def forward(self, x):
        x = self.c(x)
        return self.fc(x.view(x.size(0), -1))


def test_a_view_head_and_uneven_adaptive_pooling_are_followed():
    table = receptive_field(ViewHead(), (1, 8, 8))
    assert [r.kind for r in table.rows] == ["conv", "fc"] and table.receptive_field == 8
    table = receptive_field(nn.Sequential(conv(1, 2, 3), nn.AdaptiveAvgPool2d((2, 2))), (1, 9, 9))
    assert table.rows[-1].n_out == (2, 2) and "unequal windows" in table.notes[0]
