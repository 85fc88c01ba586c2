import gzip

import numpy as np
import pytest
from PIL import Image

from fedlab.data.datasets import load_dataset
from fedlab.data.partition import partition_indices, train_test_split
from fedlab.errors import FedlabError


@pytest.mark.parametrize(("name", "shape", "classes"), [
    ("digits", (1, 8, 8), 10), ("lfw", (1, 25, 25), 2), ("patches", (3, 32, 32), 10),
])  # fmt: skip
def test_bundled_datasets(name, shape, classes):
    ds = load_dataset(name)
    assert ds.shape == shape and ds.num_classes == classes
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert set(ds.labels.tolist()) == set(range(classes))


def test_resize():
    assert load_dataset("digits", image_size=16).shape == (1, 16, 16)


def write_cifar_batch(path, labels, rng):
    records = np.concatenate(
        [np.array(labels, dtype=np.uint8)[:, None],
         rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)], axis=1)  # fmt: skip
    records.tofile(path)
    return records


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(0)
    rec = write_cifar_batch(tmp_path / "data_batch_1.bin", [3, 7, 0], rng)
    write_cifar_batch(tmp_path / "test_batch.bin", [9], rng)
    ds = load_dataset("cifar10", str(tmp_path))
    assert len(ds) == 4 and ds.shape == (3, 32, 32)
    assert ds.labels.tolist() == [3, 7, 0, 9]
    np.testing.assert_allclose(ds.images[0].numpy().ravel() * 255, rec[0, 1:], atol=1e-3)


def test_cifar10_errors(tmp_path):
    with pytest.raises(FedlabError, match="needs data-path"):
        load_dataset("cifar10", "")
    with pytest.raises(FedlabError, match="is not a folder"):
        load_dataset("cifar10", str(tmp_path / "nope"))
    with pytest.raises(FedlabError, match="holds no CIFAR-10 binary"):
        load_dataset("cifar10", str(tmp_path))
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(FedlabError, match="not a multiple"):
        load_dataset("cifar10", str(tmp_path))


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)  # fmt: skip
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def test_mnist_idx_plain_and_gz(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4]))
    ds = load_dataset("mnist", str(tmp_path))
    assert ds.shape == (1, 28, 28) and ds.labels.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(ds.images[2, 0].numpy() * 255, images[2], atol=1e-3)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.raises(FedlabError, match="not an idx file"):
        load_dataset("mnist", str(tmp_path))


def test_image_folder(tmp_path):
    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (10, 12), colour).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset("imagefolder", str(tmp_path), image_size=8)
    assert ds.classes == ["cats", "dogs"] and ds.shape == (3, 8, 8)
    assert ds.images[0, 0].mean() == pytest.approx(1.0) and ds.images[
        -1, 2
    ].mean() == pytest.approx(1.0)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(FedlabError, match="cannot read image"):
        load_dataset("imagefolder", str(tmp_path))


@pytest.mark.parametrize("method", ["iid", "dirichlet", "shards"])
def test_partitions_are_disjoint_complete_and_deterministic(method):
    labels = np.repeat(np.arange(10), 50)
    parts = partition_indices(labels, 8, method=method, seed=3, alpha=0.3)
    again = partition_indices(labels, 8, method=method, seed=3, alpha=0.3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist()))
    if method != "shards":
        assert sorted(joined.tolist()) == list(range(500))
    other = partition_indices(labels, 8, method=method, seed=4, alpha=0.3)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


@pytest.mark.parametrize(("n", "k"), [(500, 8), (1437, 10), (7, 7), (100, 3)])
def test_iid_partitions_equal_flwr_datasets_iid_partitioner(n, k):
    from datasets import Dataset
    from flwr_datasets.partitioner import IidPartitioner

    labels = np.arange(n) % 10
    order = np.random.default_rng(5).permutation(n)
    reference = IidPartitioner(k)
    reference.dataset = Dataset.from_dict({"index": order, "label": labels[order]})
    ours = partition_indices(labels, k, method="iid", seed=5)
    for i, part in enumerate(ours):
        expected = np.sort(np.asarray(reference.load_partition(i)["index"]))
        assert np.array_equal(part, expected)
        assert not part.flags.writeable


def test_dirichlet_small_alpha_is_skewed():
    labels = np.repeat(np.arange(10), 100)
    parts = partition_indices(labels, 10, method="dirichlet", seed=0, alpha=0.1)
    dominant = [np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]
    assert np.median(dominant) > 0.5


def test_too_many_partitions_is_a_clear_error():
    with pytest.raises(FedlabError, match="need at least 20 training examples"):
        partition_indices(np.zeros(10, dtype=int), 20)


def test_train_test_split_is_stratified():
    labels = np.repeat(np.arange(4), 25)
    train, test = train_test_split(labels, 0.2)
    assert len(test) == 20 and np.bincount(labels[test]).tolist() == [5, 5, 5, 5]
    assert not set(train) & set(test)
