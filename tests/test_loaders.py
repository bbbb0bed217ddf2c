import pytest
import torch

from kit import data
from kit.loaders import BLOCK_BYTES, ClassicLoader, DeviceLoader, make_loaders
from kit.train import set_seed
from kit.transforms import Augment, affine, random_crop


def pair(toy, path, **kw):
    s = data.stats(toy)
    return make_loaders((toy, toy), path=path, batch_size=16, test_batch_size=16, mean=s.mean, std=s.std,
                        **({"num_workers": 0} if path == "classic" else {}), **kw)


@pytest.mark.parametrize("fixture", ["toy", "toy_rgb"])
def test_both_paths_give_the_same_batches(fixture, request):
    data_ = request.getfixturevalue(fixture)
    (_, dev_test), (_, cls_test) = pair(data_, "device"), pair(data_, "classic")
    assert len(dev_test) == len(cls_test) == 4
    for (xd, yd), (xc, yc) in zip(dev_test, cls_test):
        assert xd.shape == xc.shape and xd.dtype == xc.dtype == torch.float32
        assert torch.allclose(xd, xc, atol=1e-6) and torch.equal(yd, yc)


def test_normalisation_gives_zero_mean_unit_std(toy_rgb):
    for path in ("device", "classic"):
        _, test = pair(toy_rgb, path)
        x = torch.cat([b for b, _ in test])
        assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
        assert (x.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4


def test_train_loaders_agree_in_shape_and_length(toy):
    (dev, _), (cls, _) = pair(toy, "device", augment=Augment(rotation=7)), pair(toy, "classic", augment=Augment(rotation=7))
    assert len(dev) == len(cls)
    assert [x.shape for x, _ in dev] == [x.shape for x, _ in cls]
    assert sorted(torch.cat([y for _, y in dev]).tolist()) == sorted(toy.labels.tolist())


def test_device_loader_is_deterministic_under_a_seed(toy):
    aug = Augment(rotation=10, translate=0.1)

    def batches(seed):
        train, _ = pair(toy, "device", augment=aug, seed=seed)
        return [x for _ in range(2) for x, _ in train]  # two epochs

    a, b, c = batches(1), batches(1), batches(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(a[0], a[len(a) // 2])  # the second epoch is a new shuffle


def test_classic_loader_is_deterministic_under_a_seed(toy):
    def batches():
        set_seed(3)
        train, _ = pair(toy, "classic", augment=Augment(rotation=10), seed=3)
        return [x for x, _ in train]

    assert all(torch.equal(x, y) for x, y in zip(batches(), batches()))


def test_augment_is_deterministic_given_a_generator():
    x = torch.rand(8, 3, 16, 16)
    aug = Augment(rotation=15, translate=0.1, scale=(0.9, 1.1), crop_padding=2, hflip=True)
    one = aug(x, torch.Generator().manual_seed(0))
    two = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(one, two) and not torch.equal(one, x)


def test_affine_rotation_and_shift_are_exact_on_pixel_centres():
    x = torch.rand(2, 1, 9, 9)
    turned = affine(x, torch.tensor([90.0, -90.0]), torch.zeros(2, 2), torch.ones(2))
    assert torch.allclose(turned[0], torch.rot90(x[0], 1, (1, 2)), atol=1e-5)  # counter-clockwise
    assert torch.allclose(turned[1], torch.rot90(x[1], -1, (1, 2)), atol=1e-5)
    shifted = affine(x, torch.zeros(2), torch.tensor([[2.0, 1.0], [0.0, 0.0]]), torch.ones(2))
    assert torch.allclose(shifted[0, :, 1:, 2:], x[0, :, :-1, :-2], atol=1e-5)
    assert shifted[0, :, 0, :].abs().max() == 0 and shifted[0, :, :, :2].abs().max() == 0  # filled with black
    assert torch.allclose(shifted[1], x[1], atol=1e-5)


def test_affine_keeps_rotation_a_rotation_on_non_square_images():
    x = torch.zeros(1, 1, 6, 10)
    x[0, 0, 2:4, 1:9] = 1  # a horizontal bar through the centre
    turned = affine(x, torch.tensor([90.0]), torch.zeros(1, 2), torch.ones(1))
    assert turned[0, 0, :, 4:6].sum() > 0.9 * turned.sum()  # now vertical, in the middle columns


def test_random_crop_shifts_and_pads_with_zeros():
    x = torch.ones(16, 1, 8, 8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and (out == 0).any() and out.max() == 1
    assert torch.equal(random_crop(x, 0), x)


def test_augment_validates_its_settings():
    with pytest.raises(ValueError, match="rotation >= 0"):
        Augment(rotation=-1)
    with pytest.raises(ValueError, match="scale"):
        Augment(scale=(1.2, 0.8))


def test_augment_speaks_torchvision_too():
    steps = Augment(rotation=7, crop_padding=4, hflip=True).torchvision((32, 32))
    assert [type(s).__name__ for s in steps] == ["RandomCrop", "RandomAffine", "RandomHorizontalFlip"]
    assert Augment().torchvision((28, 28)) == []


def test_loaders_carry_normalisation_and_classes(toy):
    train, test = pair(toy, "device")
    assert isinstance(train, DeviceLoader) and train.classes == toy.classes and len(train.mean) == 1
    train, _ = pair(toy, "classic")
    assert isinstance(train, ClassicLoader) and train.std == test.std


def test_make_loaders_rejects_unknown_path(toy):
    with pytest.raises(ValueError, match="'device', 'classic'"):
        make_loaders((toy, toy), path="gpu")


def test_limit_keeps_the_first_images(toy):
    train, test = make_loaders((toy, toy), limit=10, batch_size=4)
    assert sum(len(y) for _, y in train) == 10 and sum(len(y) for _, y in test) == 10


def test_a_plan_draws_only_what_its_ranges_need():
    assert Augment().plan(8, (28, 28)) == {}
    assert set(Augment(rotation=7).plan(8, (28, 28))) == {"theta"}
    assert set(Augment(crop_padding=2, hflip=True).plan(8, (28, 28))) == {"crop", "flip"}


def test_a_plan_stays_within_its_ranges():
    plan = Augment(rotation=7, scale=(0.9, 1.1)).plan(2000, (28, 28), torch.Generator().manual_seed(0))
    theta = plan["theta"]
    angles = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    zooms = 1 / torch.hypot(theta[:, 0, 0], theta[:, 1, 0])
    assert angles.abs().max() <= 7 + 1e-4 and angles.abs().max() > 6.5
    assert 0.9 - 1e-5 <= zooms.min() and zooms.max() <= 1.1 + 1e-5
    crop = Augment(crop_padding=2).plan(2000, (8, 8), torch.Generator().manual_seed(0))["crop"]
    assert crop.min() == 0 and crop.max() == 4


def test_an_epoch_draws_its_augmentation_once(toy, monkeypatch):
    train, _ = pair(toy, "device", augment=Augment(rotation=10))
    calls = []
    original = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: (calls.append(a), original(*a, **k))[1])
    batches = list(train)
    assert len(batches) == 4 and len(calls) == 1  # one draw for the whole epoch, not one per batch


@pytest.mark.parametrize("drop_last", [False, True])
def test_a_block_of_batches_gives_each_batch_bit_for_bit(toy_rgb, monkeypatch, drop_last):
    """A GPU prepares many batches at once (fewer launches); the batches must be the ones a CPU hands out one at a
    time, shuffle, augmentation and normalisation included. 60 images in batches of 16: blocks of 3 leave a short
    last block and a short last batch."""
    aug = Augment(rotation=7, translate=0.1, scale=(0.9, 1.1), crop_padding=2, hflip=True)
    subset = toy_rgb.subset(60)

    def epochs(per_block):
        monkeypatch.setattr(DeviceLoader, "batches_per_block", lambda self: per_block)
        s = data.stats(subset)
        loaders = [DeviceLoader(subset, 16, train=train, mean=s.mean, std=s.std, augment=aug, device="cpu", seed=5,
                                drop_last=drop_last) for train in (True, False)]
        return [batch for loader in loaders for _ in range(2) for batch in loader]

    one, blocks = epochs(1), epochs(3)
    assert len(one) == len(blocks) == 4 * (3 if drop_last else 4)  # two loaders, two epochs each
    for (x1, y1), (x3, y3) in zip(one, blocks):
        assert torch.equal(x1, x3) and torch.equal(y1, y3)


def test_a_gpu_prepares_blocks_of_batches_and_a_cpu_one_at_a_time(toy):
    train, _ = pair(toy, "device", augment=Augment(rotation=7))
    assert train.batches_per_block() == 1
    train.device = torch.device("cuda")  # only the rule is asked: 16 images of 12 x 12 floats a batch
    assert train.batches_per_block() == BLOCK_BYTES // (4 * 144 * 16)


def test_test_batches_are_sized_for_the_device(toy):
    _, test = make_loaders((toy, toy), device="cpu")
    assert test.batch_size == 256
    train, _ = make_loaders((toy, toy))
    assert train.device == torch.device("cpu")  # "auto" on a machine without a GPU


def test_the_three_paths_draw_from_the_same_ranges():
    aug = Augment(rotation=7, translate=0.1, scale=(0.9, 1.1), crop_padding=2, hflip=True)
    tv = {type(s).__name__: s for s in aug.torchvision((28, 28))}
    al = {type(s).__name__: s for s in aug.albumentations((28, 28)).transforms}
    assert tuple(tv["RandomAffine"].degrees) == (-7, 7) == tuple(al["Affine"].rotate)
    assert tuple(tv["RandomAffine"].scale) == (0.9, 1.1) == tuple(al["Affine"].scale["x"])
    assert tuple(tv["RandomAffine"].translate) == (0.1, 0.1) and tuple(al["Affine"].translate_percent["x"]) == (-0.1, 0.1)
    assert tv["RandomCrop"].padding == 2 and al["PadIfNeeded"].min_height == 32 and al["RandomCrop"].height == 28
    assert tv["RandomHorizontalFlip"].p == 0.5 == al["HorizontalFlip"].p
    # The device path's draws, read back from its matrices (the inverse map, output -> input, on [-1, 1]):
    plan = aug.plan(4000, (28, 28), torch.Generator().manual_seed(0))
    theta = plan["theta"].double()
    linear, offset = theta[:, :, :2], theta[:, :, 2:]
    angles = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 0, 0]))
    zooms = torch.linalg.det(linear).rsqrt()
    shifts = -(torch.linalg.solve(linear, offset)).squeeze(2) * 28 / 2  # pixels
    for drawn, low, high in ((angles, -7, 7), (zooms, 0.9, 1.1), (shifts, -2.8, 2.8)):  # the whole range, no more
        edge = 0.1 * (high - low)
        assert low - 1e-4 <= drawn.min() < low + edge and high - edge < drawn.max() <= high + 1e-4
    assert plan["crop"].min() == 0 and plan["crop"].max() == 4  # offsets into the image padded by 2 on each side
    assert 0.45 < plan["flip"].float().mean() < 0.55


def test_the_albumentations_path_matches_the_others_without_augmentation(toy):
    (_, dev), (_, alb) = pair(toy, "device"), pair(toy, "albumentations")
    for (xd, yd), (xa, ya) in zip(dev, alb):
        assert torch.allclose(xd, xa, atol=1e-5) and torch.equal(yd, ya)


def test_the_albumentations_path_augments_repeatably(toy):
    def batches():
        train, _ = pair(toy, "albumentations", augment=Augment(rotation=10, hflip=True), seed=4)
        return [x for x, _ in train]

    a, b = batches(), batches()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    plain, _ = pair(toy, "albumentations")
    assert not all(torch.equal(x, y) for x, (y, _) in zip(a, plain))
