import pytest
import torch
from torch import nn

from kit.models import NORMS, CompactNet, ConvBlock, GapHead, TransitionBlock, count_parameters, norm_layer


@pytest.mark.parametrize("norm,kind,groups", [
    ("batch", nn.BatchNorm2d, None), ("group", nn.GroupNorm, 2), ("layer", nn.GroupNorm, 1),
    ("instance", nn.GroupNorm, 8), ("none", nn.Identity, None),
])
def test_each_norm(norm, kind, groups):
    block = ConvBlock(4, 8, norm=norm, padding=1, dropout=0.1)
    assert type(block.norm) is kind
    if groups:
        assert block.norm.num_groups == groups
    assert block.conv.bias is None if norm != "none" else block.conv.bias is not None
    assert block(torch.randn(2, 4, 10, 10)).shape == (2, 8, 10, 10)


def test_unknown_norm_lists_the_valid_ones():
    with pytest.raises(ValueError) as e:
        ConvBlock(4, 8, norm="batchnorm")
    assert "'batchnorm'" in str(e.value) and all(f"'{n}'" in str(e.value) for n in NORMS)


def test_group_norm_needs_divisible_channels():
    with pytest.raises(ValueError, match="divisible"):
        norm_layer("group", 6, groups=4)


def test_residual_adds_the_input_before_the_activation():
    block = ConvBlock(4, 4, padding=1, norm="none", residual=True, activation=nn.Identity)
    nn.init.zeros_(block.conv.weight)
    nn.init.zeros_(block.conv.bias)
    x = torch.randn(1, 4, 6, 6)
    assert torch.equal(block(x), x)


def test_residual_needs_a_shape_keeping_block():
    with pytest.raises(ValueError, match="must keep its shape"):
        ConvBlock(4, 8, padding=1, residual=True)
    with pytest.raises(ValueError, match="must keep its shape"):
        ConvBlock(4, 4, padding=0, residual=True)


def test_transition_block_halves_size_and_cuts_channels():
    t = TransitionBlock(16, 8)
    assert t(torch.randn(2, 16, 24, 24)).shape == (2, 8, 12, 12)
    assert count_parameters(t) == 16 * 8


def test_gap_head_gives_one_score_per_class():
    assert GapHead(16, 10)(torch.randn(3, 16, 5, 5)).shape == (3, 10)


def test_count_parameters_skips_frozen_ones_by_default():
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    assert count_parameters(m) == 6 and count_parameters(m, trainable_only=False) == 8


def test_compact_net_fits_the_extra_credit_budget():
    m = CompactNet()
    assert count_parameters(m) == 7416 < 8000
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
