"""Replay the next epoch of a CIFAR run from its checkpoint.pth.tar, one line per training step:
the loss and the smallest clipping thresholds after the step. It trains exactly as the run
(the checkpoint's own arguments, model, optimizer and schedule; the epoch's shuffle comes from
(seed, epoch)), so a run that stopped on a NaN loss shows here which step and which alpha
started it. Nothing is written.

    python tools/replay_steps.py CKPT --data DIR [--steps N] [--alpha-floor F] [--show K]
"""
import argparse
import math
import os

import torch
import torch.nn as nn

from apot.checkpoint import load_checkpoint, restore_run
from apot.cli import ArgumentParser, cli_main, data_root, non_negative_float, positive_int
from apot.training import is_alpha, memory_format
from CIFAR import main as cifar
from CIFAR.data import Normalize, load_cifar, train_batches


def run_args(path, data, alpha_floor):
    """The run's main.py arguments as its checkpoint recorded them, with this data folder and
    (where given) another --alpha-floor."""
    args = cifar.get_args_parser().parse_args([])
    vars(args).update(load_checkpoint(path)["args"], data=data, resume=path)
    if alpha_floor is not None:
        args.alpha_floor = alpha_floor
    return args


def replay(args, steps, show, say=print):
    """Train up to `steps` steps of the epoch args.resume's checkpoint ends before; returns
    their losses."""
    model = cifar.build_model(args)
    parts = cifar.training_parts(model, args)
    epoch = restore_run(args.resume, parts).epoch
    x, y = load_cifar(args.data, args.dataset, download=False, train=True)[:2]
    normalize = Normalize(args.dataset, torch.device("cpu"), memory_format(args))
    alphas = {name: p for name, p in model.named_parameters() if is_alpha(name)}
    criterion = nn.CrossEntropyLoss()
    model.train()
    say(f"epoch {epoch} of {args.save_dir}, alpha floor {args.alpha_floor}")
    batches = train_batches(x, y, args.batch_size, args.seed, epoch, 0, 1)
    losses = []
    for step, (images, target) in zip(range(steps), batches):
        _, loss = cifar.train_step(model, criterion, parts.optimizer, normalize(images),
                                   target)
        losses.append(loss.item())
        smallest = sorted((p.item(), name) for name, p in alphas.items())[:show]
        say(f"step {step} loss {losses[-1]:.4f} | "
            + ", ".join(f"{name} {value:.5g}" for value, name in smallest))
        if not math.isfinite(losses[-1]):
            break
    return losses


def get_args_parser():
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a CIFAR run's checkpoint.pth.tar")
    p.add_argument("--data", default=os.path.join(data_root(), "cifar10"),
                   help="folder holding cifar-10-batches-py/")
    p.add_argument("--steps", default=40, type=positive_int, help="steps to replay")
    p.add_argument("--alpha-floor", type=non_negative_float,
                   help="replay with this --alpha-floor instead of the run's")
    p.add_argument("--show", default=2, type=positive_int, help="smallest alphas to print")
    return p


def run(args):
    replay(run_args(args.checkpoint, args.data, args.alpha_floor), args.steps, args.show)


if __name__ == "__main__":
    cli_main(get_args_parser(), run)
