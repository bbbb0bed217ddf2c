import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from kit.formats import FormatError, ImageSet, read_cifar10, read_idx, read_image_folder, read_tiny_imagenet


def write_idx(path, array: np.ndarray):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


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


def write_cifar10(folder, per_batch=4):
    """CIFAR-10's on-disk format: pickled dicts of uint8 rows (3 x 32 x 32) and labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch}, f, protocol=2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, per_batch)), b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


def test_cifar10_reader(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    train = read_cifar10(tmp_path / "cifar-10-batches-py", "train")
    test = read_cifar10(tmp_path / "cifar-10-batches-py", "test")
    assert (len(train), len(test), train.shape) == (20, 4, (3, 32, 32))
    assert train.classes[0] == "airplane" and train.images.dtype == torch.uint8


def test_cifar10_reader_rejects_garbage(tmp_path):
    write_cifar10(tmp_path / "c")
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


def write_tiny_imagenet(root, wnids=("n01443537", "n01629819"), per_class=2):
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
    write_tiny_imagenet(tmp_path)
    train = read_tiny_imagenet(tmp_path, "train")
    val = read_tiny_imagenet(tmp_path, "val")
    assert train.shape == (3, 64, 64) and len(train) == 4 and len(val) == 4
    assert train.classes == ("goldfish", "European fire salamander")
    assert val.labels.tolist() == [0, 0, 1, 1]


def test_tiny_imagenet_unknown_class_in_annotations(tmp_path):
    write_tiny_imagenet(tmp_path)
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
