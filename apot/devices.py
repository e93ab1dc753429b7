"""Devices and processes: torchrun's process group, the GPU (or CPU) each process uses, its
float32 arithmetic, DDP or DataParallel around the model, and sums over processes."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from apot.bngroups import check_bn_groups
from apot.errors import UserError


def init_distributed():
    """(rank, world_size, local_rank) under torchrun, (0, 1, 0) otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(ids, local_rank, world_size):
    """(device, DataParallel device ids or None) from the -id string; CPU without a GPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu"), None
    if world_size > 1:
        gpu = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(gpu)
        return torch.device("cuda", gpu), None
    try:
        gpus = [int(i) for i in ids.split(",") if i.strip()]
    except ValueError as e:
        raise UserError(f"-id/--device takes GPU ids like 0 or 0,1, got {ids!r}") from e
    count = torch.cuda.device_count()
    if not gpus or max(gpus) >= count or min(gpus) < 0:
        raise UserError(f"-id/--device {ids!r}: this machine has {count} GPU(s)")
    torch.cuda.set_device(gpus[0])
    return torch.device("cuda", gpus[0]), (gpus if len(gpus) > 1 else None)


def set_float32_arithmetic(tf32):
    """IEEE FP32 convolutions and matmuls on GPUs unless tf32 (TensorFloat-32: faster on Ampere
    and later, with a 10-bit mantissa). PyTorch's own default lets cuDNN convolutions use TF32,
    which would make GPU runs differ in precision from the CPU's and the authors' (V100) runs.
    Returns the arithmetic's name, for reports."""
    precision = "tf32" if tf32 else "ieee"
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9: mixing APIs is an error
        # Per operation: on torch 2.11 the cudnn-wide flag left convolutions at TF32 (measured
        # on an H100: 7e-4 relative error, and the authors' 2-bit checkpoint lost 0.26 points).
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cudnn.rnn.fp32_precision = precision
        torch.backends.cuda.matmul.fp32_precision = precision
    else:
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return "TF32" if tf32 else "IEEE FP32"


def wrap_model(model, world, device, dp_ids):
    """(training net, evaluation net): DDP or DataParallel around the model where asked.
    DDP evaluates with the bare model: its forward syncs buffers, which would hang ranks with
    no test batch."""
    if world > 1:
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None), model
    if dp_ids:
        net = nn.DataParallel(model, device_ids=dp_ids)
        return net, net
    return model, model


def all_reduce_sum(values, device):
    """Sum a list of numbers over all processes (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@dataclass
class RunContext:
    """Where this process trains: its rank among world processes, its device, the GPUs of an
    nn.DataParallel run (or None), and whether it stays quiet (no progress bars)."""
    rank: int
    world: int
    device: torch.device
    dp_ids: list
    quiet: bool

    def say(self, *args, **kwargs):
        """print on rank 0 only."""
        if self.rank == 0:
            print(*args, **kwargs)


def start_process(args):
    """Processes, device, float32 arithmetic, the batch checks and the seed: the set-up both
    main.py files share. Returns the RunContext."""
    rank, world, local_rank = init_distributed()
    device, dp_ids = pick_device(args.device, local_rank, world)
    if getattr(args, "compile_model", False) and (world > 1 or dp_ids):
        raise UserError("--compile-model trains on one device: not under torchrun, nor with "
                        "several -id GPUs")
    set_float32_arithmetic(args.tf32)
    ctx = RunContext(rank, world, device, dp_ids, args.no_progress or rank != 0)
    if device.type == "cpu":
        ctx.say("no GPU found: running on the CPU")
        if getattr(args, "threads", 0):
            torch.set_num_threads(args.threads)
    if args.batch_size % world:
        raise UserError(f"batch size {args.batch_size} does not split over {world} processes")
    check_bn_groups(args.bn_groups, args.batch_size // world)
    torch.manual_seed(args.seed)
    return ctx
