"""ImageNet data for training, evaluation, export and benchmarks: the authors' transforms, the
ImageFolder splits with one-line errors for a bad layout, and the loaders.

Training augmentation is seeded per sample from (--seed, epoch, index), not per worker: the
crops and flips of an epoch are the same whatever the number of loader processes, with
persistent workers, and after a --resume.
"""
import os

import torch
import torchvision
from torchvision import transforms

from apot.errors import UserError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
LAYOUT = ("an ImageFolder root holding val/ (and train/ to train), each with one folder of "
          "images per class")


def split_transform(split, size):
    """The authors' transforms: resize to 8/7 of the crop, random crop and flip for training,
    centre crop for validation."""
    resize = transforms.Resize(round(size * 8 / 7))
    crop = ([transforms.RandomCrop(size), transforms.RandomHorizontalFlip()] if split == "train"
            else [transforms.CenterCrop(size)])
    return transforms.Compose([resize, *crop, transforms.ToTensor(),
                               transforms.Normalize(MEAN, STD)])


def split_path(root, split):
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise UserError(f"{folder} not found: --data must be {LAYOUT}")
    return folder


def image_folder(root, split, size):
    """root/split as an ImageFolder with the split's transform."""
    folder = split_path(root, split)
    try:
        return torchvision.datasets.ImageFolder(folder, split_transform(split, size))
    except (FileNotFoundError, RuntimeError) as e:
        raise UserError(f"{folder}: {e}") from e


def train_and_val(root, size):
    """(train, val) ImageFolders whose class folders agree; both folders are looked for before
    either is scanned."""
    split_path(root, "train"), split_path(root, "val")
    train, val = image_folder(root, "train", size), image_folder(root, "val", size)
    if train.classes != val.classes:
        raise UserError(f"train/ and val/ under {root} have different class folders")
    return train, val


class _SeededSamples(torch.utils.data.Dataset):
    """Items looked up by (index, epoch), each transformed under its own torch seed."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + epoch) * 100_000_007 + index) % 2**63)
            return self.dataset[index]


class _EpochSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler whose indices carry the epoch to _SeededSamples in the workers."""

    def __iter__(self):
        return ((i, self.epoch) for i in super().__iter__())


def train_loader(dataset, batch, workers, seed, rank, world):
    """Shuffled per-process batches (drop_last); call .sampler.set_epoch(epoch) every epoch."""
    sampler = _EpochSampler(dataset, world, rank, shuffle=True, seed=seed)
    return torch.utils.data.DataLoader(_SeededSamples(dataset, seed), batch_size=batch,
                                       sampler=sampler, num_workers=workers, drop_last=True,
                                       persistent_workers=workers > 0,
                                       pin_memory=torch.cuda.is_available())


def eval_loader(dataset, batch, workers, rank=0, world=1):
    """Every sample once over all processes, in order, no padding duplicates."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch,
                                       sampler=range(rank, len(dataset), world),
                                       num_workers=workers, pin_memory=torch.cuda.is_available())
