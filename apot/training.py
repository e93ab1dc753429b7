"""The epoch loop both main.py files run (each keeps its data, model, optimizer groups and
schedule): a fresh start or an exact resumption, then per epoch the training, the test, the
log row, the line and the checkpoints; and the model set-up and --init rules they share."""
import math
import os
import time

import torch

from apot.bngroups import split_batchnorm
from apot.checkpoint import Progress, restore_run, run_state
from apot.devices import all_reduce_sum
from apot.errors import UserError
from apot.runfolder import (epoch_line, epoch_row, prepare_save_dir, report_final, save_epoch,
                            write_args)

# The clipping thresholds: the CIFAR layers' names (the authors' Jan 2020 code) and the
# ImageNet layers' (their May 2020 code). A checkpoint of another bit-width or a float one
# may lack them: they start at their defaults.
ALPHA_NAMES = ("act_alpha", "wgt_alpha", "weight_alpha")


def is_alpha(key):
    """Whether a state-dict key is a clipping threshold."""
    return key.endswith(ALPHA_NAMES)


def hold_alphas(optimizer, model, floor):
    """--alpha-floor: after every optimizer step, raise each clipping threshold below floor to
    it. Nothing changes while every alpha stays at or above floor, so such a run is the
    authors' arithmetic; without it an alpha that the step carries through zero makes a/alpha
    change sign and the loss NaN within a few steps (our ResNet-56 4-bit run at epoch 121)."""
    alphas = [p for name, p in model.named_parameters() if is_alpha(name)]
    if floor <= 0 or not alphas:
        return

    @torch.no_grad()
    def hold(*_):
        for p in alphas:
            p.clamp_(min=floor)

    optimizer.register_step_post_hook(hold)


def create_model(archs, args, num_classes):
    """main.py's model: archs[args.arch] at args.bit with args.quant's levels, its BatchNorms
    split into args.bn_groups, in args.channels_last's memory format."""
    model = archs[args.arch](bit=args.bit, num_classes=num_classes, quant=args.quant)
    return split_batchnorm(model, args.bn_groups).to(memory_format=memory_format(args))


def memory_format(args):
    return torch.channels_last if args.channels_last else torch.contiguous_format


def run_meta(args, keys):
    """What a checkpoint records of its run (these keys of args), and what --resume must match."""
    return {key: getattr(args, key) for key in keys}


class EpochSums:
    """An epoch's running loss and hit counts (top-1, ...), kept on the device, where reading
    them would wait for it, and summed over the processes at the end."""

    def __init__(self, device, kinds=1):
        self.device = device
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.hits = torch.zeros(kinds, dtype=torch.int64, device=device)
        self.count = 0

    def add(self, loss, hits, n):
        """A batch of n images: its mean loss and its hits, one count per kind."""
        self.loss += loss.detach().double() * n
        self.hits += hits
        self.count += n

    def means(self):
        """(mean loss, 100 * hits / images of each kind) over every process's images."""
        loss, *hits, count = all_reduce_sum([self.loss.item(), *self.hits.tolist(), self.count],
                                            self.device)
        count = max(count, 1)
        return (loss / count, *(100 * h / count for h in hits))


NAN_CHECK_EVERY = 10  # training steps between two checks for a non-finite loss (each syncs)


def check_finite(loss_sum, epoch, step, steps):
    """Stop on a non-finite loss: loss_sum is the epoch's running loss (a device tensor), read
    after every NAN_CHECK_EVERY-th of the epoch's steps and after its last, not every step.
    Returns whether it was read at this step."""
    if (step + 1) % NAN_CHECK_EVERY and step + 1 != steps:
        return False
    value = loss_sum.item()
    if not math.isfinite(value):
        first = step - step % NAN_CHECK_EVERY
        raise UserError(f"loss is {value} at epoch {epoch}, steps {first}-{step}: training "
                        "diverged; the last checkpoint is intact (lower --lr, check the data, or "
                        "keep the clipping thresholds positive with --alpha-floor)")
    return True


def resume_or_start(args, ctx, parts):
    """Create the run folder args.save_dir and return the run's Progress: fresh, or from
    --resume."""
    if ctx.rank == 0:
        prepare_save_dir(args.save_dir, args.resume)
    if not args.resume:
        return Progress()
    progress = restore_run(args.resume, parts)
    ctx.say(f"=> resumed {args.resume} at epoch {progress.epoch}")
    return progress


def train_epochs(args, ctx, parts, progress, train_epoch, evaluate, epoch_schedule=True):
    """The epoch loop from progress (resume_or_start's); train_epoch(epoch) and evaluate()
    return dicts of metrics (train_loss, train_acc; test_loss, test_acc...). After every epoch:
    the schedule's step (epoch_schedule; a per-iteration schedule steps in train_epoch), the
    log row, the epoch line, and on rank 0 the checkpoints."""
    if progress.epoch >= args.epochs:
        ctx.say(f"=> {args.save_dir} has all {args.epochs} epochs: nothing to train")
        report_final(progress.history, progress.best, ctx.say)
        return
    if ctx.rank == 0:
        write_args(os.path.join(args.save_dir, "args.json"), args)
    for epoch in range(progress.epoch, args.epochs):
        t0 = time.time()
        lr = parts.optimizer.param_groups[0]["lr"]
        train = train_epoch(epoch)
        test = evaluate()
        if epoch_schedule:
            parts.scheduler.step()
        is_best = test["test_acc"] > progress.best  # strictly higher, as the authors' model_best
        progress.best = max(progress.best, test["test_acc"])
        progress.history.append(epoch_row(epoch, lr, progress.best, t0, **train, **test))
        ctx.say(epoch_line(epoch, lr, {**train, **test}, progress.best,
                           progress.history[-1]["seconds"]), flush=True)
        progress.epoch = epoch + 1
        if ctx.rank == 0:
            save_epoch(run_state(parts, progress, args), args.save_dir, is_best)
    report_final(progress.history, progress.best, ctx.say)
