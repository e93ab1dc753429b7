"""CIFAR-10/100 held in memory as uint8 tensors, augmented on whole batches on the device.

No per-image Python in the hot loop: a batch is cropped (4-pixel black padding, then a random
32x32 window), flipped and normalised with a handful of tensor ops. Every random draw of an
epoch comes from a generator seeded with (seed, epoch), so an epoch is the same whether the run
was resumed or not.
"""
import os
import pickle

import numpy as np
import torch

from apot.errors import UserError

STATS = {  # (mean, std) per dataset, applied to train and test alike
    "cifar10": ((0.491, 0.482, 0.447), (0.247, 0.243, 0.262)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
LAYOUT = {  # folder, training files, test files, label key
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
PAD = 4


class DataError(UserError):
    """The dataset is missing or unreadable; the message says what to put where."""


def _read_batches(folder, files, label_key):
    images, labels = [], []
    for name in files:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry[label_key])
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
            raise DataError(f"cannot read {path}: {e}") from e
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def _download(root, dataset):
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
    cls[dataset](root, train=True, download=True)


def load_cifar(root, dataset="cifar10", download=True, train=True):
    """(train_x, train_y, test_x, test_y): uint8 N x 3 x 32 x 32 images and int64 labels.

    A present folder is read as it is (no checksum: copies without the 'filenames' key are
    valid); a missing one is downloaded with torchvision unless download is False. With
    train=False the training files are neither read nor needed (evaluation), and train_x and
    train_y are None.
    """
    sub, train_files, test_files, label_key = LAYOUT[dataset]
    folder = os.path.join(root, sub)
    if not os.path.isdir(folder):
        hint = (f"{dataset} not found: expected the folder {folder}/ holding "
                f"{', '.join(train_files + test_files)} (the python-pickle layout of the "
                "official archive)")
        if not download:
            raise DataError(hint + "; downloading is disabled (--no-download)")
        try:
            _download(root, dataset)
        except Exception as e:  # any network or archive failure gets the same advice
            raise DataError(f"{hint}; the download failed ({type(e).__name__}: {e})") from e
    train_xy = _read_batches(folder, train_files, label_key) if train else (None, None)
    return (*train_xy, *_read_batches(folder, test_files, label_key))


class Normalize:
    """uint8 batch -> normalised float batch on the batch's device, in the model's memory format
    (channels_last by default: see main.py --channels-last)."""

    def __init__(self, dataset, device, memory_format=torch.channels_last):
        mean, std = STATS[dataset]
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.memory_format = memory_format

    def __call__(self, x):
        return ((x.float() - self.mean) / self.std).contiguous(memory_format=self.memory_format)


def augment(x, shifts, flip):
    """Crop of the zero-padded uint8 batch at the given (row, col) shifts, then flip.

    The padding is black pixels before normalisation, as torchvision's RandomCrop(32, padding=4);
    shifts is 2 x N in [0, 8], flip a bool N-vector.
    """
    n, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
    rows = shifts[0].view(n, 1, 1) + torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    cols = torch.where(flip.view(n, 1, 1), w - 1 - cols, cols) + shifts[1].view(n, 1, 1)
    batch = torch.arange(n, device=dev).view(n, 1, 1, 1)
    chan = torch.arange(3, device=dev).view(1, 3, 1, 1)
    return padded[batch, chan, rows.unsqueeze(1), cols.unsqueeze(1)]


def train_batches(x, y, batch_size, seed, epoch, rank=0, world_size=1):
    """Shuffled, augmented (uint8 images, labels) batches of one epoch; the last partial batch
    is kept.

    All of an epoch's random draws come from one generator seeded with (seed, epoch), so an
    epoch is the same whether or not the run was resumed. Every rank draws the same values and
    takes its own slice of each global batch, so the global batch stays batch_size.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    n = len(x)
    perm = torch.randperm(n, generator=g).to(x.device)
    shifts = torch.randint(0, 2 * PAD + 1, (2, n), generator=g).to(x.device)
    flip = torch.rand(n, generator=g).lt(0.5).to(x.device)
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)  # the last batch is split evenly too
        sl = slice(start + rank * size // world_size, start + (rank + 1) * size // world_size)
        idx = perm[sl]
        yield augment(x[idx], shifts[:, sl], flip[sl]), y[idx]
