"""CIFAR loading and whole-batch augmentation against per-image references."""
import numpy as np
import pytest
import torch

from CIFAR.data import PAD, DataError, Normalize, augment, load_cifar, train_batches
from helpers import write_tiny_cifar


def reference_augment(img, dy, dx, flip):
    """One image the slow way: zero-pad 4, crop 32x32 at (dy, dx), then flip."""
    padded = np.zeros((3, 40, 40), dtype=np.uint8)
    padded[:, PAD:PAD + 32, PAD:PAD + 32] = img
    crop = padded[:, dy:dy + 32, dx:dx + 32]
    return crop[:, :, ::-1] if flip else crop


def test_augment_equals_per_image_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g)
    shifts = torch.randint(0, 2 * PAD + 1, (2, 50), generator=g)
    flip = torch.rand(50, generator=g) < 0.5
    out = augment(x, shifts, flip)
    for i in range(50):
        ref = reference_augment(x[i].numpy(), shifts[0, i].item(), shifts[1, i].item(), flip[i])
        assert np.array_equal(out[i].numpy(), ref)
    # the extreme shifts show the black padding
    assert augment(x[:1], torch.tensor([[0], [0]]), torch.tensor([False]))[0, :, :4].eq(0).all()


def test_an_epoch_sees_every_image_once_and_is_reproducible():
    x = torch.arange(300, dtype=torch.uint8).repeat_interleave(3 * 32 * 32).view(300, 3, 32, 32)
    y = torch.arange(300)
    batches = list(train_batches(x, y, 128, seed=5, epoch=3))
    assert [len(b[1]) for b in batches] == [128, 128, 44]
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == list(range(300))
    again = torch.cat([b[1] for b in train_batches(x, y, 128, seed=5, epoch=3)])
    other = torch.cat([b[1] for b in train_batches(x, y, 128, seed=5, epoch=4)])
    assert torch.equal(labels, again) and not torch.equal(labels, other)


def test_ranks_split_each_global_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(300)
    single = list(train_batches(x, y, 128, seed=0, epoch=0))
    ranks = [list(train_batches(x, y, 128, seed=0, epoch=0, rank=r, world_size=2)) for r in (0, 1)]
    for k, (img, lab) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][k][0], ranks[1][k][0]]), img)
        assert torch.equal(torch.cat([ranks[0][k][1], ranks[1][k][1]]), lab)


def test_normalize_uses_the_authors_statistics():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = Normalize("cifar10", "cpu")(x)
    expect = [(1 - m) / s for m, s in zip((0.491, 0.482, 0.447), (0.247, 0.243, 0.262))]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expect))


def test_reads_a_cifar_folder_without_checksums(tiny_cifar):
    train_x, train_y, test_x, test_y = load_cifar(tiny_cifar, download=False)
    assert train_x.shape == (60, 3, 32, 32) and train_x.dtype == torch.uint8
    assert test_x.shape == (40, 3, 32, 32) and len(test_y) == 40 and len(train_y) == 60


def test_evaluation_reads_the_test_set_alone(tmp_path):
    # -e on a machine that holds only test_batch (a GPU machine with just the test set, say)
    folder = tmp_path / "cifar-10-batches-py"
    full = write_tiny_cifar(tmp_path / "full") / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes((full / "test_batch").read_bytes())
    train_x, train_y, test_x, test_y = load_cifar(tmp_path, download=False, train=False)
    assert train_x is None and train_y is None
    assert torch.equal(test_x, load_cifar(full.parent, download=False)[2])
    with pytest.raises(DataError, match="cannot read .*data_batch_1"):
        load_cifar(tmp_path, download=False)


def test_missing_folder_without_download_names_the_folder(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py.*data_batch_1.*--no-download"):
        load_cifar(tmp_path, download=False)


def test_corrupt_batch_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read .*data_batch_1"):
        load_cifar(tmp_path, download=False)


def test_reads_cifar100_fine_labels(tmp_path):
    import pickle
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 10)):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "fine_labels": rng.integers(0, 100, n).tolist(),
                 "coarse_labels": rng.integers(0, 20, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    train_x, train_y, test_x, test_y = load_cifar(tmp_path, "cifar100", download=False)
    assert train_x.shape == (30, 3, 32, 32) and test_x.shape == (10, 3, 32, 32)
    assert train_y.tolist() == pickle.loads((folder / "train").read_bytes())["fine_labels"]
    out = Normalize("cifar100", "cpu")(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))
    assert torch.allclose(out.flatten(), torch.tensor([(1 - 0.5071) / 0.2675,
                                                        (1 - 0.4867) / 0.2565,
                                                        (1 - 0.4408) / 0.2761]))

