"""Train or evaluate APoT-quantized ResNet-18/34/50 on ImageNet (the authors' May 2020 variant).

    python ImageNet/main.py -a resnet18 --bit 4 --data /imagenet --pretrained torchvision
    torchrun --nproc_per_node 8 ImageNet/main.py -a resnet18 --bit 4 --data /imagenet ...
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 ImageNet/main.py ...

--data is an ImageFolder root with train/ and val/ (val/ alone for -e). -b is the global batch,
split over the processes. Only rank 0 writes the run folder; metrics are summed over all ranks.
"""

import torch
import torch.nn as nn
import torchvision
from tqdm import tqdm

from apot.checkpoint import TrainingParts, check_run_meta, load_checkpoint, load_weights
from apot.cli import cli_main, non_negative_int, positive_float, positive_int, training_parser
from apot.devices import start_process, wrap_model
from apot.errors import UserError
from apot.training import (EpochSums, check_finite, create_model, hold_alphas, is_alpha,
                           resume_or_start, run_meta, train_epochs)
from ImageNet.data import IMAGE_SIZE, eval_loader, image_folder, train_and_val, train_loader
from ImageNet.resnet import ARCHS

TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                       "resnet50": "ResNet50_Weights"}
# What a checkpoint records of its run: -e must match the first three, --resume all.
RUN_META = ("arch", "bit", "quant", "bn_groups")


def get_args_parser():
    p = training_parser("APoT quantization on ImageNet (ResNet-18/34/50)", ARCHS,
                        arch="resnet18", epochs=100, batch_size=1024, lr=0.01,
                        channels_last=False)
    p.add_argument("--data", required=True,
                   help="ImageFolder root holding train/ and val/ (-e reads val/ alone)")
    p.add_argument("--warmup-iters", default=2500, type=non_negative_int,
                   help="iterations over which the lr moves linearly from --warmup-lr to --lr")
    p.add_argument("--warmup-lr", default=None, type=positive_float,
                   help="lr at the first iteration (default: --lr, i.e. no warm-up)")
    p.add_argument("--lr-steps", default=[30, 60, 90], type=non_negative_int, nargs="*",
                   help="epochs at which the lr is multiplied by 0.1")
    p.add_argument("--workers", default=8, type=non_negative_int,
                   help="data loading processes per rank")
    p.add_argument("--image-size", default=IMAGE_SIZE, type=positive_int,
                   help="crop size; images are first resized to size * 8/7 (256 for 224)")
    p.add_argument("--pretrained", default="", metavar="PATH|torchvision",
                   help="full-precision weights to start from: a file (torchvision's or ours) or "
                        "'torchvision' to fetch torchvision's ImageNet weights; or --init")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on GPUs)")
    return p


def lr_factor(args, iters_per_epoch):
    """Per-iteration lr multiplier: linear warm-up from --warmup-lr, then x0.1 at --lr-steps."""
    start = args.lr if args.warmup_lr is None else args.warmup_lr

    def factor(it):
        if it < args.warmup_iters and start != args.lr:
            return (start + (args.lr - start) * it / args.warmup_iters) / args.lr
        epoch = it // iters_per_epoch
        return 0.1 ** sum(epoch >= s for s in args.lr_steps)

    return factor


def load_pretrained(model, source, arch, allow_download):
    """Full-precision weights into a model of any bit-width: only alphas may be missing."""
    if source == "torchvision":
        if not allow_download:
            raise UserError("--pretrained torchvision needs a download, which --no-download "
                            "forbids: pass a local weights file with --pretrained PATH")
        weights = getattr(torchvision.models, TORCHVISION_WEIGHTS[arch]).IMAGENET1K_V1
        try:
            state_dict = weights.get_state_dict(progress=False)
        except Exception as e:
            raise UserError(f"cannot fetch torchvision's {arch} weights ({type(e).__name__}): "
                            "pass a local weights file with --pretrained PATH") from e
    else:
        state_dict = load_checkpoint(source)["state_dict"]
    return load_weights(model, state_dict, source, may_miss=is_alpha)


def accuracy_counts(output, target):
    """(top-1, top-5) hits of a batch, as device tensors."""
    top5 = output.topk(min(5, output.shape[1]), dim=1).indices
    hits = top5 == target.view(-1, 1)
    return hits[:, 0].sum(), hits.any(1).sum()


def to_device(images, target, device, channels_last):
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, target.to(device, non_blocking=True)


def train_one_epoch(net, criterion, parts, data, epoch, ctx, args):
    """(mean loss, top-1, top-5) over the epoch, stepping parts' optimizer, per-iteration
    schedule and loss scaler; the sums stay on the device, read every NAN_CHECK_EVERY steps for
    the non-finite check."""
    optimizer, scheduler, scaler = parts.optimizer, parts.scheduler, parts.scaler
    net.train()
    sums = EpochSums(ctx.device, kinds=2)  # top-1, top-5
    for step, (images, target) in enumerate(tqdm(data, desc=f"train {epoch}", disable=ctx.quiet,
                                                 leave=False)):
        images, target = to_device(images, target, ctx.device, args.channels_last)
        with torch.autocast(ctx.device.type, enabled=args.amp):
            output = net(images)
            loss = criterion(output, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        sums.add(loss, torch.stack(accuracy_counts(output, target)), len(target))
        check_finite(sums.loss, epoch, step, len(data))
    return sums.means()


@torch.no_grad()
def evaluate(model, criterion, data, ctx, args):
    model.eval()
    sums = EpochSums(ctx.device, kinds=2)
    for images, target in tqdm(data, desc="val", disable=ctx.quiet, leave=False):
        images, target = to_device(images, target, ctx.device, args.channels_last)
        with torch.autocast(ctx.device.type, enabled=args.amp):
            output = model(images)
        sums.add(criterion(output.float(), target), torch.stack(accuracy_counts(output, target)),
                 len(target))
    return sums.means()


def build_model(args, num_classes):
    return create_model(ARCHS, args, num_classes)


def evaluate_checkpoint(model, criterion, val_data, ctx, args):
    """-e: evaluate --init, --pretrained or --resume, loaded strictly (a missing alpha means
    another bit-width), except torchvision's own weights, whose alphas keep their defaults."""
    source = args.init or args.pretrained or args.resume
    if not source:
        raise UserError("-e/--evaluate needs --init, --pretrained or --resume")
    if source == "torchvision":
        load_pretrained(model, source, args.arch, not args.no_download)
    else:
        ckpt = load_checkpoint(source)
        check_run_meta(ckpt, f"checkpoint {source}", **run_meta(args, RUN_META[:3]))
        load_weights(model, ckpt["state_dict"], source)
    _, top1, top5 = evaluate(model, criterion, val_data, ctx, args)
    ctx.say(f"* Prec@1 {top1:.2f} Prec@5 {top5:.2f}")


def make_training(model, args, iters_per_epoch, device):
    """SGD over all parameters (alphas included, as the authors'), the per-iteration schedule,
    and the loss scaler (on only with --amp on a GPU: CPU autocast runs bfloat16)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    hold_alphas(optimizer, model, args.alpha_floor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(args, iters_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    return optimizer, scheduler, scaler


def run(args):
    if args.init and args.pretrained:  # run.sh passes --pretrained unless --init is given
        raise UserError(f"--init {args.init} and --pretrained {args.pretrained} both name the "
                        "starting weights: give one")
    ctx = start_process(args)
    local_batch = args.batch_size // ctx.world
    if args.evaluate:  # val/ alone: a user evaluating a checkpoint often has no train/
        train_set, val_set = None, image_folder(args.data, "val", args.image_size)
    else:
        train_set, val_set = train_and_val(args.data, args.image_size)
    model = build_model(args, len(val_set.classes)).to(ctx.device)
    criterion = nn.CrossEntropyLoss()
    val_data = eval_loader(val_set, local_batch, args.workers, ctx.rank, ctx.world)

    if args.evaluate:
        evaluate_checkpoint(model, criterion, val_data, ctx, args)
        return

    for flag, source in (("--pretrained", args.pretrained), ("--init", args.init)):
        if source and not args.resume:
            missing = load_pretrained(model, source, args.arch, not args.no_download)
            ctx.say(f"=> {flag} {source}" + (f" ({len(missing)} alphas at their defaults)"
                                             if missing else ""))
    train_data = train_loader(train_set, local_batch, args.workers, args.seed, ctx.rank,
                              ctx.world)
    if len(train_data) == 0:
        raise UserError(f"{len(train_set)} training images do not fill one batch of "
                        f"{args.batch_size}")
    optimizer, scheduler, scaler = make_training(model, args, len(train_data), ctx.device)
    parts = TrainingParts(model, optimizer, scheduler, run_meta(args, RUN_META), scaler)
    progress = resume_or_start(args, ctx, parts)
    net, eval_net = wrap_model(model, ctx.world, ctx.device, ctx.dp_ids)

    def train_epoch(epoch):
        train_data.sampler.set_epoch(epoch)
        loss, acc, _ = train_one_epoch(net, criterion, parts, train_data, epoch, ctx, args)
        return dict(train_loss=loss, train_acc=acc)

    def test_epoch():
        loss, top1, top5 = evaluate(eval_net, criterion, val_data, ctx, args)
        return dict(test_loss=loss, test_acc=top1, test_top5=top5)

    # the schedule steps every iteration, inside train_one_epoch
    train_epochs(args, ctx, parts, progress, train_epoch, test_epoch, epoch_schedule=False)


def main(argv=None):
    cli_main(get_args_parser(), run, argv)


if __name__ == "__main__":
    main()
