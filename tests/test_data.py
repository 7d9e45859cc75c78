"""Data: the real CIFAR-10 subset, both local layouts, transforms and clear errors."""

import pickle

import numpy as np
import pytest
import torch
from torchvision import datasets
from torchvision.datasets import cifar

from cvt_edu.train.data import CIFAR10_CLASSES, DataError, eval_transform, load_data, load_split, train_transform


def test_reads_the_cifar10_subset(cifar_mini):
    train, test = cifar_mini
    assert (len(train), len(test)) == (4068, 1017)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
    assert set(train.labels.tolist()) == set(range(10))


def test_class_order_is_the_cifar10_label_order(cifar_mini, data_dir):
    train, _ = cifar_mini
    assert train.classes == CIFAR10_CLASSES
    # an image read back from its class folder carries that folder's official index
    ship = min((data_dir / "train" / "ship").glob("*.png"))
    assert datasets.ImageFolder(data_dir / "train").class_to_idx["ship"] == 8 == CIFAR10_CLASSES.index("ship")
    index = next(i for i, label in enumerate(train.labels.tolist()) if label == 8)
    from PIL import Image

    assert torch.equal(train.images[index], torch.from_numpy(np.array(Image.open(ship))).permute(2, 0, 1))


def test_a_missing_folder_names_the_path_and_the_layouts(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_split("train", missing)
    message = str(err.value)
    assert str(missing) in message and "ImageFolder" in message and "cifar-10-batches-py" in message


def test_a_folder_in_no_layout_is_rejected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"no 'test/<class>/' folders in"):
        load_split("test", tmp_path)


def test_data_folder_comes_from_the_environment(monkeypatch, data_dir, cifar_mini):
    monkeypatch.setenv("CVT_EDU_DATA", str(data_dir))
    assert len(load_split("test")) == 1017
    train, test = load_data()  # what the chapters call, with no path
    assert torch.equal(train.labels, cifar_mini[0].labels) and torch.equal(test.images, cifar_mini[1].images)


def test_reads_the_official_python_layout(tmp_path, monkeypatch, cifar_mini):
    """The official pickled batches, written from real images, read back identically."""
    train, test = cifar_mini
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    def dump(name, images, labels):
        data = images.reshape(len(images), -1).numpy()  # the official rows are the R, G, B planes, 1024 values each
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist()}, f)

    for i in range(5):
        dump(f"data_batch_{i + 1}", train.images[i * 800 : (i + 1) * 800], train.labels[i * 800 : (i + 1) * 800])
    dump("test_batch", test.images, test.labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
    # torchvision checks the official files' MD5 sums, which files written here cannot match
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    for path in (tmp_path, folder):
        loaded = load_split("test", path)
        assert loaded.classes == CIFAR10_CLASSES
        assert torch.equal(loaded.images, test.images) and torch.equal(loaded.labels, test.labels)
    assert len(load_split("train", tmp_path)) == 4000


def test_corrupt_official_batches_name_the_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="incomplete or corrupt CIFAR-10 batches"):
        load_split("train", tmp_path)


def test_transforms_normalise_and_augment(cifar_mini):
    train, _ = cifar_mini
    image = train.images[0]
    plain = eval_transform()(image)
    assert plain.dtype == torch.float32 and plain.shape == (3, 32, 32)
    batch = eval_transform()(train.images[:512])
    assert abs(batch.mean().item()) < 0.3 and 0.7 < batch.std().item() < 1.3
    torch.manual_seed(0)
    augmented = torch.stack([train_transform()(image) for _ in range(8)])
    assert augmented.shape == (8, 3, 32, 32)
    assert not all(torch.equal(a, plain) for a in augmented)
