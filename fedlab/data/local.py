"""Readers for datasets kept on a user's disk, in each dataset's standard format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from fedlab.errors import FedlabError

CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
CIFAR10_RECORD = 1 + 3 * 32 * 32
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def _existing_dir(data_path: str, what: str, expected: str) -> Path:
    if not data_path:
        raise FedlabError(
            f"dataset {what} needs data-path: a local folder holding {expected}; "
            f"set data-path=/path/to/{what}"
        )
    path = Path(data_path).expanduser()
    if not path.is_dir():
        raise FedlabError(
            f"data-path {data_path!r} for {what} is not a folder; it must hold {expected}"
        )
    return path


def read_cifar10_binary(data_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the CIFAR-10 binary batches found in ``data_path`` (the python pickles are refused).

    Returns
    -------
    images : ndarray, uint8, (N, 3, 32, 32)
    labels : ndarray, int64, (N,)
    """
    expected = "CIFAR-10 binary batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin)"
    path = _existing_dir(data_path, "cifar10", expected)
    if (path / "cifar-10-batches-bin").is_dir():
        path = path / "cifar-10-batches-bin"
    files = [path / f for f in CIFAR10_FILES if (path / f).is_file()]
    if not files:
        hint = (
            " (found the python version: use the binary one)"
            if (path / "data_batch_1").exists()
            else ""
        )
        raise FedlabError(f"data-path {data_path!r} holds no {expected}{hint}")
    chunks = []
    for f in files:
        raw = np.fromfile(f, dtype=np.uint8)
        if raw.size == 0 or raw.size % CIFAR10_RECORD:
            raise FedlabError(
                f"{f} has {raw.size} bytes, not a multiple of the {CIFAR10_RECORD}-byte "
                "CIFAR-10 record (1 label byte + 3072 pixel bytes); is it a binary batch?"
            )
        chunks.append(raw.reshape(-1, CIFAR10_RECORD))
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise FedlabError(f"CIFAR-10 labels must be 0..9, found {labels.max()} in {data_path!r}")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise FedlabError(f"{path} is not an idx file of unsigned bytes (magic 0x0000080N)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise FedlabError(f"{path}: header says shape {shape} but holds {body.size} values")
    return body.reshape(shape)


def read_mnist_idx(data_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST idx files (train and t10k, images and labels, plain or .gz) in ``data_path``."""
    expected = "MNIST idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...)"
    path = _existing_dir(data_path, "mnist", expected)
    images, labels = [], []
    for split in ("train", "t10k"):
        found = {}
        for kind, stem in (
            ("images", f"{split}-images-idx3-ubyte"),
            ("labels", f"{split}-labels-idx1-ubyte"),
        ):
            for candidate in (
                path / stem,
                path / f"{stem}.gz",
                path / stem.replace("-idx", ".idx"),
            ):
                if candidate.is_file():
                    found[kind] = _read_idx(candidate)
                    break
        if len(found) == 2:
            if len(found["images"]) != len(found["labels"]):
                raise FedlabError(
                    f"MNIST {split}: {len(found['images'])} images but "
                    f"{len(found['labels'])} labels"
                )
            images.append(found["images"])
            labels.append(found["labels"].astype(np.int64))
    if not images:
        raise FedlabError(f"data-path {data_path!r} holds no {expected}")
    return np.concatenate(images), np.concatenate(labels)


def read_image_folder(data_path: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``data_path/<class>/<image>`` files as RGB, resized to ``image_size`` squared."""
    from PIL import Image, UnidentifiedImageError

    expected = "one subfolder per class, each holding image files"
    path = _existing_dir(data_path, "imagefolder", expected)
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((path / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as img:
                    rgb = img.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            except (UnidentifiedImageError, OSError) as exc:
                raise FedlabError(f"cannot read image {f}: {exc}; remove or replace it") from None
            images.append(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)
            labels.append(label)
    if not images:
        raise FedlabError(f"data-path {data_path!r} holds no images; expected {expected}")
    return np.stack(images), np.array(labels, dtype=np.int64), classes
