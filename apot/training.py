"""Training plumbing shared by both dataset folders: the run set-up and the epoch loop (each
main.py keeps its data, model, optimizer groups and schedule), checkpoints, state-dict checks,
run logs, devices and distributed set-up."""
import argparse
import csv
import json
import math
import os
import secrets
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from apot.bngroups import check_bn_groups
from apot.errors import UnsupportedValue, UserError  # noqa: F401  (both part of this API)
from apot.projection import compilation


# --- checkpoints -------------------------------------------------------------------------------

def atomic_write(path, write, text=False):
    """write(file) into a temporary file in the same folder, then rename: a crash never leaves a
    truncated file, and the previous one stays intact until the new one is complete. The
    temporary file is created as open() creates one (0o666 less the umask, which the kernel
    applies), so the result has the permissions a plain write would give it. text: a text file
    with newline="" (csv writes its own line ends)."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{name}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w", newline="") if text else os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """torch.save, written atomically (atomic_write)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path):
    """A checkpoint dict with a 'state_dict' (or a bare state dict), read with weights_only."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read checkpoint {path} (corrupt or not a PyTorch checkpoint): "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if isinstance(ckpt, dict) and "state_dict" not in ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        ckpt = {"state_dict": ckpt}
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path} holds no state_dict")
    return ckpt


def strip_module_prefix(state_dict):
    """Keys without the 'module.' prefix that nn.DataParallel and DDP checkpoints carry."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def _summarise(keys, limit=4):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model, state_dict, source, may_miss=lambda key: False):
    """Copy a checkpoint's weights into model; every key must match in name and shape, except
    missing keys for which may_miss(key) is true (they keep the model's values). Returns the
    list of keys that were missing."""
    state_dict = strip_module_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items()
                 if k in own and tuple(v.shape) != tuple(own[k].shape)]
    not_allowed = [k for k in missing if not may_miss(k)]
    problems = []
    if not_allowed:
        problems.append(f"missing {_summarise(not_allowed)}")
    if unexpected:
        problems.append(f"unexpected {_summarise(unexpected)}")
    if bad_shape:
        problems.append(f"mis-shaped {_summarise(bad_shape)}")
    if problems:
        raise UserError(f"checkpoint {source} does not fit this model ({'; '.join(problems)}): "
                        "wrong architecture, bit-width or dataset?")
    model.load_state_dict(state_dict, strict=False)
    constant = constant_quantized_weights(model)
    if constant:
        raise UserError(f"checkpoint {source} holds constant weights (std 0) in "
                        f"{_summarise(constant)}: the weight quantizer divides by their std")
    return missing


def constant_quantized_weights(model):
    """Names of the quantized convs (those with an activation alpha) whose weights are all
    equal: the quantizers normalise weights by their std, which would make them NaN. Checked
    where weights are loaded, not in every forward, which would wait for the device."""
    with torch.no_grad():
        return [name for name, m in model.named_modules()
                if hasattr(m, "act_alpha") and not bool(m.weight.std() > 0)]


# --- run folder --------------------------------------------------------------------------------

def prepare_save_dir(save_dir, resume):
    """Create the run folder; refuse to start a new run over an existing one."""
    os.makedirs(save_dir, exist_ok=True)
    last = os.path.join(save_dir, "checkpoint.pth.tar")
    if os.path.exists(last) and not resume:
        raise UserError(f"{save_dir} already holds a run: continue it with --resume {last} "
                        "or choose another --save-dir")


def run_state(model, optimizer, scheduler, epoch, best_prec, history, args, scaler=None, **meta):
    """The one checkpoint dict: what evaluation, --init and exact resumption need (with a
    GradScaler, its loss scale and growth tracker too)."""
    state = {"epoch": epoch, **meta, "state_dict": model.state_dict(), "best_prec": best_prec,
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "history": history, "args": vars(args)}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    return state


_SCALER_KEYS = {"scale": float, "growth_factor": float, "backoff_factor": float,
                "growth_interval": int, "_growth_tracker": int}


def check_scaler_state(state, path):
    """A checkpoint's GradScaler entry: {} (saved with the scaler off) or its five numbers."""
    if state == {}:
        return
    ok = isinstance(state, dict) and set(state) == set(_SCALER_KEYS) and all(
        isinstance(state[k], (t, int)) and not isinstance(state[k], bool)
        for k, t in _SCALER_KEYS.items())
    if not ok or not (math.isfinite(state["scale"]) and state["scale"] > 0):
        raise UserError(f"--resume {path}: corrupt 'scaler' entry (expected the loss scale "
                        f"state of torch.amp.GradScaler, got {str(state)[:80]})")


def check_run_meta(ckpt, source, **meta):
    """A checkpoint that records its run's metadata (arch, bit...) must match meta; the authors'
    checkpoints record none and are checked by their keys and shapes alone."""
    for key, value in meta.items():
        if ckpt.get(key, value) != value:
            raise UserError(f"{source} is a {key}={ckpt[key]} run, not {key}={value}")


def restore_run(path, model, optimizer, scheduler, scaler=None, **meta):
    """Model, optimizer, schedule (and scaler, where the run has one) from a --resume checkpoint,
    whose metadata (arch, bit...) must equal meta; returns (start epoch, best accuracy, history).
    Everything is checked before anything is loaded."""
    ckpt = load_checkpoint(path)
    check_run_meta(ckpt, f"--resume {path}", **meta)
    for key in ("optimizer", "scheduler", "epoch", "history"):
        if key not in ckpt:
            raise UserError(f"--resume {path} has no {key!r}: not a resumable checkpoint "
                            "(use --init to start a new run from its weights)")
    if scaler is not None:
        check_scaler_state(ckpt.get("scaler", {}), path)
    load_weights(model, ckpt["state_dict"], path)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return ckpt["epoch"], ckpt["best_prec"], list(ckpt["history"])


def save_epoch(state, save_dir, is_best):
    """checkpoint.pth.tar every epoch, model_best.pth.tar on a new best, log.csv rewritten from
    the checkpoint's history so that it always matches the checkpoint a resumed run starts from."""
    atomic_save(state, os.path.join(save_dir, "checkpoint.pth.tar"))
    if is_best:
        atomic_save(state, os.path.join(save_dir, "model_best.pth.tar"))
    write_log(os.path.join(save_dir, "log.csv"), state["history"])


def epoch_row(epoch, lr, best, started, **metrics):
    """One log.csv row: epoch, lr, the metrics (losses to 5 places, accuracies to 3), the best
    accuracy so far and the epoch's wall time since `started` (time.time())."""
    rounded = {k: round(v, 5 if "loss" in k else 3) for k, v in metrics.items()}
    return dict(epoch=epoch, lr=lr, **rounded, best_acc=round(best, 3),
                seconds=round(time.time() - started, 1))


def write_log(path, rows):
    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, write, text=True)


def write_args(path, args):
    atomic_write(path, lambda f: f.write(json.dumps(vars(args), indent=2, sort_keys=True) + "\n"),
                 text=True)


def report_final(history, best_prec, say):
    """The last lines of a training run: final-epoch and best test top-1."""
    if history:
        say(f"* Prec@1 {history[-1]['test_acc']:.2f}")
    say(f"* Best@1 {best_prec:.2f}")


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
                        "diverged; the last checkpoint is intact (lower --lr or check the data)")
    return True


# --- devices and processes ---------------------------------------------------------------------

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


def data_root():
    """Where this project's scripts and tests look for the shared data by default (the CIFAR-10
    folder cifar10/ and the authors' checkpoints apot-official-res20/): $APOT_DATA, else
    ../shared/data beside the repository."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get("APOT_DATA") or os.path.join(os.path.dirname(here), "shared", "data")


def stage_name(bit):
    """A chain stage's name in tables, figures and benchmark reports."""
    return "FP32" if bit == 32 else f"{bit}-bit"


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


def _number(kind, minimum, strict, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    parse.__name__ = what  # argparse names the type in its own messages
    return parse


# Numeric command-line values, checked where they are parsed (a batch of 0 or 0 epochs is an
# input error, not a ZeroDivisionError or a "Best@1 0.00").
positive_int = _number(int, 0, True, "a positive integer")
non_negative_int = _number(int, 0, False, "a non-negative integer")
positive_float = _number(float, 0.0, True, "a positive number")
non_negative_float = _number(float, 0.0, False, "a non-negative number")


# --- one training run, for both dataset folders -----------------------------------------------

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


def resume_or_start(args, ctx, model, optimizer, scheduler, meta, scaler=None):
    """The run folder (args.save_dir, default result/<arch>_<bit>bit) and (start epoch, best
    accuracy, history): fresh, or from --resume."""
    args.save_dir = args.save_dir or os.path.join("result", f"{args.arch}_{args.bit}bit")
    if ctx.rank == 0:
        prepare_save_dir(args.save_dir, args.resume)
    if not args.resume:
        return 0, 0.0, []
    start, best, history = restore_run(args.resume, model, optimizer, scheduler, scaler, **meta)
    ctx.say(f"=> resumed {args.resume} at epoch {start}")
    return start, best, history


def epoch_line(epoch, lr, metrics, best, seconds):
    """The line each epoch prints (metrics unrounded, as the epoch computed them)."""
    m = metrics
    top5 = f" top-5 {m['test_top5']:.2f}" if "test_top5" in m else ""
    return (f"epoch {epoch}: lr {lr:.5g} train loss {m['train_loss']:.4f} acc "
            f"{m['train_acc']:.2f} | test loss {m['test_loss']:.4f} acc {m['test_acc']:.2f}{top5} "
            f"| best {best:.2f} | {seconds}s")


def train_epochs(args, ctx, model, optimizer, scheduler, run, train_epoch, evaluate, meta,
                 scaler=None, epoch_schedule=True):
    """The epoch loop: run = (start epoch, best, history) from resume_or_start; train_epoch(epoch)
    and evaluate() return dicts of metrics (train_loss, train_acc; test_loss, test_acc...).
    After every epoch: the schedule's step (epoch_schedule; a per-iteration schedule steps in
    train_epoch), the log row, the epoch line, and on rank 0 the checkpoints."""
    start, best, history = run
    if start >= args.epochs:
        ctx.say(f"=> {args.save_dir} has all {args.epochs} epochs: nothing to train")
        report_final(history, best, ctx.say)
        return
    if ctx.rank == 0:
        write_args(os.path.join(args.save_dir, "args.json"), args)
    for epoch in range(start, args.epochs):
        t0 = time.time()
        lr = optimizer.param_groups[0]["lr"]
        train = train_epoch(epoch)
        test = evaluate()
        if epoch_schedule:
            scheduler.step()
        is_best = test["test_acc"] > best  # strictly higher, as the authors' model_best
        best = max(best, test["test_acc"])
        history.append(epoch_row(epoch, lr, best, t0, **train, **test))
        ctx.say(epoch_line(epoch, lr, {**train, **test}, best, history[-1]["seconds"]),
                flush=True)
        if ctx.rank == 0:
            save_epoch(run_state(model, optimizer, scheduler, epoch + 1, best, history, args,
                                 scaler, **meta), args.save_dir, is_best)
    report_final(history, best, ctx.say)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one `error: ...` line instead of a usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def cli_main(parser, run, argv=None):
    """Parse the arguments and run; the project's own input errors (UserError) become one
    `error: ...` line on stderr and exit status 1. Any other exception keeps its traceback."""
    args = parser.parse_args(argv)
    try:
        with compilation(False if getattr(args, "no_compile", False) else None):
            run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
