"""Small MNIST and CIFAR-10 datasets in torchvision's on-disk formats, written per test."""

from __future__ import annotations

import hashlib
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from adamz.workloads import clear_data_cache

MNIST_TRAIN, MNIST_TEST = 96, 40  # the tests state these numbers where they rely on them
CIFAR_PER_BATCH, CIFAR_TEST = 20, 30


@pytest.fixture(autouse=True)
def _fresh_data_cache() -> None:
    clear_data_cache()


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Train on one CPU thread: the models are tiny, and on a machine busy with other work
    (the test suite's own subprocesses, a worker) two threads spin against each other and
    make a one-second run take twenty."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def labelled_images(count: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 noise images whose label is written into them as a bright block (learnable)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    images = rng.integers(0, 64, size=(count, *shape), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[..., 2 * label : 2 * label + 2, :] = 255
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (type 0x08), the format of MNIST's raw files."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """``tmp_path`` holding ``MNIST/raw`` as torchvision reads it (uncompressed IDX files)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, count, seed in (("train", MNIST_TRAIN, 1), ("t10k", MNIST_TEST, 2)):
        images, labels = labelled_images(count, (28, 28), seed)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return tmp_path


@pytest.fixture
def cifar10_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` holding ``cifar-10-batches-py`` in the python version's pickle format.

    torchvision's CIFAR10 verifies each file against the md5 sum of the real dataset's file
    and refuses anything else. The files written here are small stand-ins, so the test
    replaces the expected sums, on the class for this test only, with the sums of the files it
    wrote. Everything else is torchvision's code: the integrity check itself (still run, still
    able to fail), the unpickling, the reshape to HWC and the metadata file.
    """
    folder = tmp_path / CIFAR10.base_folder
    folder.mkdir()

    def write(name: str, entry: dict[str, object]) -> list[str]:
        path = folder / name
        path.write_bytes(pickle.dumps(entry))
        return [name, hashlib.md5(path.read_bytes()).hexdigest()]

    def batch(count: int, seed: int) -> dict[str, object]:
        images, labels = labelled_images(count, (3, 32, 32), seed)
        return {"data": images.reshape(count, 3072), "labels": [int(x) for x in labels]}

    train_list = [write(f"data_batch_{i}", batch(CIFAR_PER_BATCH, i)) for i in range(1, 6)]
    test_list = [write("test_batch", batch(CIFAR_TEST, 9))]
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    _, meta_md5 = write("batches.meta", {"label_names": names})
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", test_list)
    monkeypatch.setattr(
        CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": meta_md5}
    )
    return tmp_path
