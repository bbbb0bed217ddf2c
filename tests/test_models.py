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


# --- the models of the ten steps and of the studies ---

from kit.models import (  # noqa: E402
    CapacityNet,
    GapNet,
    LighterNet,
    NormNet,
    PoolAt5Net,
    SetupNet,
    SkeletonNet,
    Student,
    Teacher,
    xavier_init,
)
from kit.rf import receptive_field  # noqa: E402


@pytest.mark.parametrize("build,parameters,rf", [
    (SetupNet, 6_379_786, 40),
    (SkeletonNet, 195_352, 28),
    (LighterNet, 10_890, 28),
    (lambda: LighterNet(norm="batch"), 10_980, 28),
    (GapNet, 6_050, 28),
    (CapacityNet, 10_402, 32),
    (PoolAt5Net, 10_402, 32),
])
def test_each_step_model_has_its_size_and_sees_the_whole_digit(build, parameters, rf):
    model = build()
    assert count_parameters(model) == parameters
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert receptive_field(model, (1, 28, 28)).receptive_field == rf >= 28


def test_pool_at_5_pools_where_the_receptive_field_is_5():
    table = receptive_field(PoolAt5Net(), (1, 28, 28))
    pool = next(r for r in table.rows if r.kind == "pool")
    assert pool.r_in == (5, 5)


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance"])
def test_the_norm_study_changes_only_the_norm(norm):
    model = NormNet(norm)
    assert count_parameters(model) == count_parameters(NormNet("batch")) < 50_000
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(m.residual for m in model.modules() if isinstance(m, ConvBlock)) == 4
    assert receptive_field(model, (3, 32, 32)).receptive_field == 68  # the course's table


def test_teacher_and_student_follow_the_study_rules():
    convs = lambda m: [x for x in m.modules() if isinstance(x, nn.Conv2d)]  # noqa: E731
    pools = lambda m: [x for x in m.modules() if isinstance(x, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d))]  # noqa: E731
    teacher, student = Teacher(), Student()
    assert len(convs(teacher)) == 12 and convs(teacher)[0].out_channels == 12 and len(pools(teacher)) == 1
    assert len(convs(student)) == 3 and len(pools(student)) == 1
    for m in (teacher, student):
        assert m.head.fc.out_features == 1024 and m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert Teacher(3, 200)(torch.randn(1, 3, 64, 64)).shape == (1, 200)  # TinyImageNet's shape
    assert count_parameters(student) < count_parameters(teacher) / 5


def test_xavier_init_bounds_the_weights_and_zeroes_the_biases():
    layer = xavier_init(nn.Sequential(nn.Linear(100, 50)))[0]
    bound = (6 / 150) ** 0.5
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.8 * bound
    assert torch.count_nonzero(layer.bias) == 0


def test_dropout_comes_last_in_a_block_and_only_while_training():
    # the fingerprints train without dropout (its CPU masks differ by CPU vendor); where the block puts it is pinned here
    block = ConvBlock(2, 4, padding=1, dropout=0.5)
    x = torch.randn(3, 2, 6, 6)
    block.eval()
    assert torch.equal(block(x), nn.ReLU()(block.norm(block.conv(x))))  # no dropout at test time
    block.train()
    active = nn.ReLU()(block.norm(block.conv(x)))
    torch.manual_seed(0)
    y = block(x)
    kept = y != 0  # dropout after the activation: what survives is the active output scaled by 1 / (1 - p)
    assert torch.allclose(y[kept], 2 * active[kept]) and 0 < kept.float().mean() < (active > 0).float().mean()
    assert type(ConvBlock(2, 4).dropout) is nn.Identity  # no dropout unless asked for
