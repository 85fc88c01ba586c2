"""Offline image datasets: what scikit-learn and scikit-image ship, plus user data from local paths.

Every builder returns an :class:`ImageDataset` with images as float32 ``(N, C, H, W)`` in [0, 1]
and int64 labels. Builders take ``(data_path, image_size)``; bundled sets ignore ``data_path``.
Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from fedlab.data import local
from fedlab.errors import FedlabError
from fedlab.limits import MAX_DATASET_BYTES, check_cap
from fedlab.registry import DATASETS


@dataclass
class ImageDataset(Dataset):
    """Images in [0, 1] with integer labels.

    Parameters
    ----------
    images : torch.Tensor
        float32, shape (N, C, H, W), values in [0, 1].
    labels : torch.Tensor
        int64, shape (N,).
    classes : list of str
        Class names; ``labels`` index into it.
    name : str
        Dataset name, for messages and run folders.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise FedlabError(
                f"dataset {self.name!r}: images of shape {tuple(self.images.shape)} and "
                f"{len(self.labels)} labels do not match (N, C, H, W) with N labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: np.ndarray) -> ImageDataset:
        idx = torch.from_numpy(np.array(indices, dtype=np.int64))  # copy: partitions are read-only
        return ImageDataset(self.images[idx], self.labels[idx], self.classes, self.name)


def from_numpy(
    images: np.ndarray, labels: np.ndarray, classes: list[str], name: str
) -> ImageDataset:
    """Wrap numpy arrays (N, H, W) or (N, C, H, W) in [0, 1]."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        classes,
        name,
    )


def resize(ds: ImageDataset, image_size: int) -> ImageDataset:
    """Bilinear resize to ``image_size`` x ``image_size``; 0 keeps the native size."""
    if image_size <= 0 or ds.images.shape[-1] == image_size == ds.images.shape[-2]:
        return ds
    n, c = ds.images.shape[:2]
    check_cap(n * c * image_size * image_size * 4, MAX_DATASET_BYTES,
              f"image-size={image_size}: the resized {ds.name} dataset's bytes")  # fmt: skip
    images = torch.nn.functional.interpolate(
        ds.images, size=(image_size, image_size), mode="bilinear", align_corners=False
    ).clamp_(0, 1)
    return ImageDataset(images, ds.labels, ds.classes, ds.name)


@DATASETS.register("digits")
def digits(data_path: str = "", image_size: int = 0) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 grey, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = from_numpy(bunch.images / 16.0, bunch.target, [str(i) for i in range(10)], "digits")
    return resize(ds, image_size)


@DATASETS.register("lfw")
def lfw(data_path: str = "", image_size: int = 0) -> ImageDataset:
    """scikit-image's ``lfw_subset``: 100 faces then 100 non-faces, 25x25 grey."""
    from skimage.data import lfw_subset

    images = lfw_subset()
    labels = np.repeat([0, 1], len(images) // 2)
    return resize(from_numpy(images, labels, ["face", "non-face"], "lfw"), image_size)


PATCH_SOURCES = (
    "astronaut", "brick", "camera", "chelsea", "coffee",
    "coins", "grass", "gravel", "moon", "rocket",
)  # fmt: skip


@DATASETS.register("patches")
def patches(data_path: str = "", image_size: int = 0, per_class: int = 200) -> ImageDataset:
    """Random 32x32 RGB crops of ten bundled scikit-image photos; the class is the photo.

    The crops are fixed (seed 0), so the dataset is the same in every run and process.
    """
    from skimage import data as skdata
    from skimage.transform import rescale

    rng = np.random.default_rng(0)
    size = 32
    xs, ys = [], []
    for label, name in enumerate(PATCH_SOURCES):
        img = getattr(skdata, name)().astype(np.float32)
        img = img / 255.0 if img.max() > 1 else img
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = rescale(img[..., :3], 0.5, channel_axis=2, anti_aliasing=True)
        h, w = img.shape[:2]
        top = rng.integers(0, h - size, per_class)
        left = rng.integers(0, w - size, per_class)
        for t, lft in zip(top, left, strict=True):
            xs.append(img[t : t + size, lft : lft + size].transpose(2, 0, 1))
        ys += [label] * per_class
    return resize(
        from_numpy(np.stack(xs), np.array(ys), list(PATCH_SOURCES), "patches"), image_size
    )


@DATASETS.register("cifar10")
def cifar10(data_path: str = "", image_size: int = 0) -> ImageDataset:
    """CIFAR-10 from the *binary* batches (``data_batch_1.bin`` ... ``test_batch.bin``)."""
    images, labels = local.read_cifar10_binary(data_path)
    classes = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
    return resize(from_numpy(images / 255.0, labels, classes, "cifar10"), image_size)


@DATASETS.register("mnist")
def mnist(data_path: str = "", image_size: int = 0) -> ImageDataset:
    """MNIST (or Fashion-MNIST) from the idx files, optionally gzipped."""
    images, labels = local.read_mnist_idx(data_path)
    return resize(
        from_numpy(images / 255.0, labels, [str(i) for i in range(10)], "mnist"), image_size
    )


@DATASETS.register("imagefolder")
def imagefolder(data_path: str = "", image_size: int = 0) -> ImageDataset:
    """A folder with one subfolder of images per class; images resized to ``image_size`` (32)."""
    images, labels, classes = local.read_image_folder(data_path, image_size or 32)
    return from_numpy(images, labels, classes, "imagefolder")


def load_dataset(name: str, data_path: str = "", image_size: int = 0) -> ImageDataset:
    """Build a registered dataset by name (or ``module:function``).

    Memoised per process, keyed also by the files' sizes and modification times under
    ``data_path``: a ClientApp is rebuilt for every message, and reloading the data each time
    would cost more than the local training. Treat the result as read-only.
    """
    return _load_memoised(name, data_path, image_size, _fingerprint(data_path))


@lru_cache(maxsize=4)
def _load_memoised(name: str, data_path: str, image_size: int, _files: tuple) -> ImageDataset:
    return DATASETS.get(name)(data_path=data_path, image_size=image_size)


def _fingerprint(data_path: str) -> tuple:
    if not data_path or not os.path.isdir(data_path):
        return ()
    return tuple(
        (entry.path, entry.stat().st_size, entry.stat().st_mtime_ns)
        for folder in [data_path, *sorted(e.path for e in os.scandir(data_path) if e.is_dir())]
        for entry in sorted(os.scandir(folder), key=lambda e: e.name)
        if entry.is_file()
    )
