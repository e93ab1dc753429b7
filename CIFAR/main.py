"""Train or evaluate APoT-quantized ResNets on CIFAR-10/100 (the authors' CIFAR recipe).

    python CIFAR/main.py -a res20 --bit 32 --wd 5e-4
    python CIFAR/main.py -a res20 --bit 4 --lr 0.04 --init result/res20_32bit/model_best.pth.tar
    python CIFAR/main.py -a res20 --bit 4 -e --init result/res20_4bit/model_best.pth.tar
    torchrun --nproc_per_node 2 CIFAR/main.py ...   # DistributedDataParallel, global batch kept
"""

import torch
import torch.nn as nn
from tqdm import tqdm

from apot.checkpoint import TrainingParts, check_run_meta, load_checkpoint, load_weights
from apot.cli import cli_main, non_negative_int, training_parser
from apot.devices import start_process, wrap_model
from apot.errors import UserError
from apot.training import (EpochSums, check_finite, create_model, hold_alphas, is_alpha,
                           memory_format, resume_or_start, run_meta, train_epochs)
from CIFAR.data import NUM_CLASSES, Normalize, load_cifar, train_batches
from CIFAR.resnet import ARCHS

TEST_BATCH = 100
ALPHA_GROUPS = {"act_alpha": dict(lr=0.1, weight_decay=1e-4),  # whatever --lr and --wd say
                "wgt_alpha": dict(lr=0.02, weight_decay=1e-4)}
LR_STEPS = (150, 225)
# What a checkpoint records of its run; --resume must match all, -e the first four.
RUN_META = ("arch", "bit", "quant", "dataset", "bn_groups", "channels_last")


def get_args_parser():
    p = training_parser("APoT quantization on CIFAR (ResNet-20..110)", ARCHS, arch="res20",
                        epochs=300, batch_size=128, lr=0.1, channels_last=True)
    p.add_argument("--lr-schedule", default="step", choices=["step", "cosine"],
                   help="step: x0.1 at epochs 150 and 225; cosine: CosineAnnealingLR(T_max=epochs)")
    p.add_argument("--data", default="./data", help="folder holding cifar-10-batches-py/")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100"])
    p.add_argument("--threads", default=0, type=non_negative_int,
                   help="CPU threads for PyTorch (0: its default); batches are made on the device,"
                        " so no loader processes are needed")
    p.add_argument("--compile-model", action="store_true",
                   help="compile the whole model (torch.compile, CUDA graphs): for one GPU, where "
                        "it makes 4-bit steps several times faster after minutes of compilation")
    return p


def build_model(args):
    return create_model(ARCHS, args, NUM_CLASSES[args.dataset])


def param_groups(model, args):
    """The clipping parameters get their own lr and weight decay (spec section 4)."""
    groups = {name: dict(params=[], **hyper) for name, hyper in ALPHA_GROUPS.items()}
    rest = []
    for name, p in model.named_parameters():
        kind = name.rsplit(".", 1)[-1]
        (groups[kind]["params"] if kind in groups else rest).append(p)
    return [dict(params=rest)] + [g for g in groups.values() if g["params"]]


def make_optimizer(model, args):
    optimizer = torch.optim.SGD(param_groups(model, args), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    hold_alphas(optimizer, model, args.alpha_floor)
    return optimizer


def make_scheduler(optimizer, args):
    if args.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=LR_STEPS, gamma=0.1)


def training_parts(model, args):
    """The model with what trains it and what --resume must match: optimizer, lr schedule and
    the run's metadata."""
    optimizer = make_optimizer(model, args)
    return TrainingParts(model, optimizer, make_scheduler(optimizer, args),
                         run_meta(args, RUN_META))


def compile_whole(model):
    """--compile-model: one graph for the whole model, the quantizers traced into it, replayed
    as CUDA graphs on a GPU, where the 4-bit step is otherwise bound by kernel launches
    (result/gpu_speed/)."""
    return torch.compile(model, mode="reduce-overhead")


def train_step(model, criterion, optimizer, images, target):
    output = model(images)
    loss = criterion(output, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return output, loss


def train_one_epoch(model, criterion, optimizer, data, normalize, epoch, args, ctx):
    """(mean loss, top-1) over the epoch's training batches. The sums stay on the device, read
    every NAN_CHECK_EVERY steps for the non-finite check and the progress bar, not every step."""
    model.train()
    x, y = data
    steps = -(-len(x) // args.batch_size)
    batches = train_batches(x, y, args.batch_size, args.seed, epoch, ctx.rank, ctx.world)
    bar = tqdm(batches, total=steps, desc=f"train {epoch}", disable=ctx.quiet, leave=False)
    sums = EpochSums(ctx.device)
    for step, (images, target) in enumerate(bar):
        output, loss = train_step(model, criterion, optimizer, normalize(images), target)
        sums.add(loss, (output.argmax(1) == target).sum(), len(target))
        if check_finite(sums.loss, epoch, step, steps):  # the bar only when the sums are read
            bar.set_postfix(loss=f"{sums.loss.item() / sums.count:.3f}",
                            acc=f"{100 * sums.hits[0].item() / sums.count:.2f}")
    return sums.means()


@torch.no_grad()
def evaluate(model, criterion, data, normalize, ctx):
    """Test loss and top-1 over the test set, each rank taking its share of the batches."""
    model.eval()
    x, y = data
    starts = range(ctx.rank * TEST_BATCH, len(x), TEST_BATCH * ctx.world)
    sums = EpochSums(ctx.device)
    for s in tqdm(starts, desc="test", disable=ctx.quiet, leave=False):
        images, target = x[s:s + TEST_BATCH], y[s:s + TEST_BATCH]
        output = model(normalize(images))
        sums.add(criterion(output, target), (output.argmax(1) == target).sum(), len(target))
    return sums.means()


def load_initial_weights(model, args, say):
    """-e: the checkpoint to evaluate, strictly (a missing alpha means another bit-width);
    --init: a start for training, where only alphas may be missing."""
    if args.evaluate:
        if not args.init:
            raise UserError("-e/--evaluate needs --init PATH, the checkpoint to evaluate")
        ckpt = load_checkpoint(args.init)
        # ours record their run (a 3-bit model has the keys of a 4-bit one); the authors' do not
        check_run_meta(ckpt, f"checkpoint {args.init}", **run_meta(args, RUN_META[:4]))
        load_weights(model, ckpt["state_dict"], args.init)
    elif args.init and not args.resume:
        missing = load_weights(model, load_checkpoint(args.init)["state_dict"], args.init,
                               may_miss=is_alpha)
        say(f"=> initialised from {args.init}"
            + (f" ({len(missing)} alphas start at their defaults)" if missing else ""))


def run(args):
    ctx = start_process(args)
    model = build_model(args).to(ctx.device)
    criterion = nn.CrossEntropyLoss()
    load_initial_weights(model, args, ctx.say)
    if not args.evaluate:
        parts = training_parts(model, args)
        progress = resume_or_start(args, ctx, parts)
        if progress.epoch >= args.epochs:  # a finished stage: no data to load
            return train_epochs(args, ctx, parts, progress, None, None)

    data = load_cifar(args.data, args.dataset, download=not args.no_download,
                      train=not args.evaluate)
    test_data = tuple(t.to(ctx.device) for t in data[2:])
    normalize = Normalize(args.dataset, ctx.device, memory_format(args))
    net, eval_net = wrap_model(model, ctx.world, ctx.device, ctx.dp_ids)
    if args.compile_model:
        net = eval_net = compile_whole(model)  # checkpoints still save the bare model
    if args.evaluate:
        _, prec = evaluate(eval_net, criterion, test_data, normalize, ctx)
        ctx.say(f"* Prec@1 {prec:.2f}")
        return

    train_data = tuple(t.to(ctx.device) for t in data[:2])

    def train_epoch(epoch):
        loss, acc = train_one_epoch(net, criterion, parts.optimizer, train_data, normalize,
                                    epoch, args, ctx)
        return dict(train_loss=loss, train_acc=acc)

    def test_epoch():
        loss, acc = evaluate(eval_net, criterion, test_data, normalize, ctx)
        return dict(test_loss=loss, test_acc=acc)

    train_epochs(args, ctx, parts, progress, train_epoch, test_epoch)


def main(argv=None):
    cli_main(get_args_parser(), run, argv)


if __name__ == "__main__":
    main()
