
import numpy as np
import pytest
import torch
from PIL import Image

from kit.data import CIFAR10_CLASSES
from kit.formats import (
    FormatError,
    ImageSet,
    generated,
    read_cifar10,
    read_idx,
    read_idx_pair,
    read_image_folder,
    read_tiny_imagenet,
    write_cifar10,
    write_idx,
    write_idx_pair,
    write_image_folder,
    write_tiny_imagenet,
)


def test_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", a)
    assert np.array_equal(read_idx(tmp_path / "x"), a)


def test_idx_bad_magic(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(FormatError, match="not an idx file"):
        read_idx(tmp_path / "x")


def test_idx_wrong_length(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 3), np.uint8))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-1])
    with pytest.raises(FormatError, match="promises 18 bytes .* file has 17"):
        read_idx(tmp_path / "x")


def write_random_cifar10(folder, per_batch=4):
    train = generated("cifar10", 5 * per_batch, (3, 32, 32), CIFAR10_CLASSES, seed=0)
    write_cifar10(folder, train, generated("cifar10", per_batch, (3, 32, 32), CIFAR10_CLASSES, seed=1))
    return train


def test_cifar10_reader(tmp_path):
    written = write_random_cifar10(tmp_path / "cifar-10-batches-py")
    train = read_cifar10(tmp_path / "cifar-10-batches-py", "train")
    test = read_cifar10(tmp_path / "cifar-10-batches-py", "test")
    assert (len(train), len(test), train.shape) == (20, 4, (3, 32, 32))
    assert train.classes[0] == "airplane" and train.images.dtype == torch.uint8
    # the five batches hold every image once, with its own label
    assert sorted(map(tuple, train.images.flatten(1).tolist())) == sorted(map(tuple, written.images.flatten(1).tolist()))


def test_cifar10_reader_rejects_garbage(tmp_path):
    write_random_cifar10(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="test_batch: not a CIFAR-10 batch"):
        read_cifar10(tmp_path / "c", "test")


def save_image(path, size=(8, 8), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def test_image_folder(tmp_path):
    for cls, v in (("cat", 10), ("dog", 200)):
        for i in range(3):
            save_image(tmp_path / cls / f"{i}.png", value=v)
    s = read_image_folder(tmp_path)
    assert s.classes == ("cat", "dog") and s.shape == (3, 8, 8) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(s.images[4, 0, 0, 0]) == 200


def test_image_folder_sizes_must_agree_or_be_resized(tmp_path):
    save_image(tmp_path / "a" / "0.png", (8, 8))
    save_image(tmp_path / "a" / "1.png", (6, 6))
    with pytest.raises(FormatError, match="pass size="):
        read_image_folder(tmp_path)
    assert read_image_folder(tmp_path, size=(4, 4)).shape == (3, 4, 4)


def test_image_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="one sub-folder per class"):
        read_image_folder(tmp_path / "nope")


def write_small_tiny_imagenet(root, wnids=("n01443537", "n01629819"), per_class=2):
    """TinyImageNet's layout: train/<wnid>/images/*.JPEG; val/images + val_annotations.txt."""
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text(f"{wnids[0]}\tgoldfish, Carassius auratus\n{wnids[1]}\tEuropean fire salamander\n")
    lines = []
    for k, w in enumerate(wnids):
        for i in range(per_class):
            save_image(root / "train" / w / "images" / f"{w}_{i}.JPEG", (64, 64), 50 * k)
            save_image(root / "val" / "images" / f"val_{k}{i}.JPEG", (64, 64), 50 * k)
            lines.append(f"val_{k}{i}.JPEG\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tiny_imagenet_reader(tmp_path):
    write_small_tiny_imagenet(tmp_path)
    train = read_tiny_imagenet(tmp_path, "train")
    val = read_tiny_imagenet(tmp_path, "val")
    assert train.shape == (3, 64, 64) and len(train) == 4 and len(val) == 4
    assert train.classes == ("goldfish", "European fire salamander")
    assert val.labels.tolist() == [0, 0, 1, 1]


def test_tiny_imagenet_unknown_class_in_annotations(tmp_path):
    write_small_tiny_imagenet(tmp_path)
    ann = tmp_path / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_x.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(FormatError, match="n99999999"):
        read_tiny_imagenet(tmp_path, "val")


def test_imageset_checks_its_tensors():
    with pytest.raises(FormatError, match="uint8"):
        ImageSet("x", torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), ("a",))
    with pytest.raises(FormatError, match="labels of shape"):
        ImageSet("x", torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ("a",))
    with pytest.raises(FormatError, match="0..1"):
        ImageSet("x", torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.tensor([2]), ("a", "b"))


# --- writers: what they write, the readers read back as it was ---

def test_idx_pair_round_trip(tmp_path):
    data = generated("mnist", 12, (1, 28, 28), [str(i) for i in range(10)])
    write_idx_pair(tmp_path, "train", data)
    back = read_idx_pair("mnist", tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte", data.classes)
    assert torch.equal(back.images, data.images) and torch.equal(back.labels, data.labels)
    with pytest.raises(FormatError, match="one-channel"):
        write_idx_pair(tmp_path, "x", generated("rgb", 2, (3, 4, 4), ["a"]))


def test_image_folder_and_tiny_imagenet_round_trip(tmp_path):
    data = generated("toy", 9, (3, 16, 16), ["n00000001", "n00000002", "n00000003"])
    write_image_folder(tmp_path / "folder", data)
    back = read_image_folder(tmp_path / "folder")
    assert back.classes == data.classes and sorted(back.labels.tolist()) == sorted(data.labels.tolist())
    write_tiny_imagenet(tmp_path / "tiny", data, data.subset(4))
    train, val = read_tiny_imagenet(tmp_path / "tiny", "train"), read_tiny_imagenet(tmp_path / "tiny", "val")
    assert (len(train), len(val), train.classes) == (9, 4, data.classes)
    assert torch.equal(val.images, data.images[:4]) and torch.equal(val.labels, data.labels[:4])


def test_generated_images_show_their_class_in_their_brightness():
    data = generated("toy", 400, (1, 8, 8), ["dark", "light"])
    means = [data.images[data.labels == k].float().mean() for k in (0, 1)]
    assert means[0] + 50 < means[1]


def test_an_image_folder_ignores_hidden_folders_and_refuses_an_empty_class(tmp_path):
    from kit.formats import FormatError, generated, read_image_folder, write_image_folder

    classes = ["cat", "dog"]
    write_image_folder(tmp_path / "train", generated("pets", 8, (3, 8, 8), classes, seed=0))
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # what Jupyter leaves behind
    (tmp_path / "train" / "cat" / ".ipynb_checkpoints").mkdir()
    got = read_image_folder(tmp_path / "train")
    assert got.classes == ("cat", "dog") and len(got) == 8
    (tmp_path / "train" / "ant").mkdir()  # empty: it would become class 0 and shift every label
    with pytest.raises(FormatError, match="ant: a class folder with no images"):
        read_image_folder(tmp_path / "train")
