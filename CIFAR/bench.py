"""Speed of the CIFAR training path, as ratios measured in one run (this machine is noisy).

    python CIFAR/bench.py [--arch res20] [--bit 4] [--steps 20] [--data DIR] [--device cuda]
                          [--epochs N] [--tf32] [--compile-model] [--bn-groups K]
    python CIFAR/bench.py --arch res56 --layouts 32 4 3 2 [--steps 5] [--bn-groups 2]
    python CIFAR/bench.py --arch res56 --compiled 32 4 [--steps 5] [--bn-groups 2]

1. A training step (batch 128) of the b-bit model against the FP32 one, built and stepped
   exactly as main.py does (same model construction, channels_last, compiled quantizers).
   FP32 and b-bit steps are interleaved and the median of each is compared.
2. Our projection (compiled, as the quantizers use it) against the brute-force |levels| x N
   nearest-level search of the authors, on one activation tensor of the first stage.
3. Making an epoch's batches (shuffle, crop, flip, normalise) against an FP32 epoch's steps,
   on the real training set when --data holds it, else on random images of the same size.
4. With --epochs N: N whole epochs (main.py's train_one_epoch and evaluate, batch 128, on
   random images of CIFAR-10's size held on the device) of each model, first FP32 then b-bit;
   the first epoch includes compilation, the others give the seconds per epoch and the
   projected length of a 300-epoch stage.
Runs on the GPU when there is one (--device cpu to force the CPU), in IEEE FP32 unless --tf32;
--compile-model times steps and epochs as main.py --compile-model runs them.
The last line is the step ratio: `<b>-bit/FP32 step ratio: X.XX`.
With --layouts BIT...: only the training step of each of these models in NCHW against
channels_last (main.py --no-channels-last / --channels-last), all interleaved; with --compiled
BIT...: the same, eager (main.py's default: compiled quantizers in an eager model) against
main.py --compile-model.
--summary FILE also writes the numbers printed as JSON (docs/speed.md's CPU tables are made
from result/cpu_speed/*.json by tools/speed_tables.py).
"""
import argparse
import statistics
from functools import partial

import torch

from apot.checkpoint import write_json
from apot.devices import RunContext, set_float32_arithmetic
from apot.levels import SUPPORTED_BITS, activation_levels
from apot.projection import maybe_compile, midpoints, project
from apot.runfolder import stage_name
from apot.timing import interleaved_medians, seconds
from apot.training import memory_format
from CIFAR.data import DataError, Normalize, load_cifar, train_batches
from CIFAR.main import (build_model, compile_whole, evaluate, get_args_parser, make_optimizer,
                        train_one_epoch, train_step)

STAGE_EPOCHS = 300
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000  # CIFAR-10's


def run_args(arch, bit, extra=()):
    """main.py's arguments for this model; extra: more main.py flags (--compile-model)."""
    return get_args_parser().parse_args(["-a", arch, "--bit", str(bit), *extra])


def random_images(n, generator):
    """n uint8 CIFAR-size images: speed does not depend on the pixels."""
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)


def make_trainer(args, device):
    torch.manual_seed(0)
    model = build_model(args).to(device)
    model.train()
    net = compile_whole(model) if args.compile_model else model
    return net, torch.nn.CrossEntropyLoss(), make_optimizer(model, args)


def allow_recompiles(models):
    """Each compiled quantizer function compiles once per bit-width and memory format: with
    several models in one process, past dynamo's default limit (8) later models would run
    eagerly and be timed as such."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 8 * models))


def interleaved_step_times(runs, steps, batch, device):
    """{key: median seconds of a training step} for runs = {key: main.py arguments}: each model
    built as main.py builds it, fed a batch in its own memory format, warmed up (compilation
    included), then all models stepped in turn, so that the machine's drift hits each alike."""
    allow_recompiles(len(runs))
    g = torch.Generator().manual_seed(0)
    images = random_images(batch, g).to(device)
    target = torch.randint(0, 10, (batch,), generator=g).to(device)
    trainers = {key: (make_trainer(args, device),
                      Normalize("cifar10", device, memory_format(args))(images))
                for key, args in runs.items()}
    calls = {key: partial(train_step, *trainer, x, target)
             for key, (trainer, x) in trainers.items()}
    return interleaved_medians(calls, steps, device, warmup=3)


def step_times(arch, bit, steps, batch, device, extra):
    times = interleaved_step_times({b: run_args(arch, b, extra) for b in (32, bit)}, steps,
                                   batch, device)
    return times[32], times[bit]


# --layouts and --compiled: the summary key, then the two main.py settings timed, base first
VARIANTS = {"layouts": ("layout_step_ms", {"NCHW": ["--no-channels-last"],
                                           "channels_last": ["--channels-last"]}),
            "compiled": ("compile_step_ms", {"eager": [], "--compile-model": ["--compile-model"]})}


def report_variants(kind, arch, bits, steps, batch, device, extra):
    """--layouts or --compiled: every model of `bits` in both settings, all steps interleaved."""
    variants = VARIANTS[kind][1]
    runs = {(b, name): run_args(arch, b, [*extra, *flag])
            for b in bits for name, flag in variants.items()}
    times = interleaved_step_times(runs, steps, batch, device)
    base, other = variants
    print(f"training step, {base} against {other} (median of {steps} interleaved steps each):")
    for b in bits:
        a, c = times[(b, base)], times[(b, other)]
        print(f"{stage_name(b)}: {base} {a * 1e3:.0f} ms, {other} {c * 1e3:.0f} ms: "
              f"{other}/{base} {c / a:.2f}")
    return {str(b): {name: times[(b, name)] * 1e3 for name in variants} for b in bits}


def epoch_times(arch, bit, epochs, device, extra):
    """({bit: seconds of each whole epoch (training and test pass)}, training steps an epoch)."""
    g = torch.Generator().manual_seed(0)
    images = random_images(TRAIN_IMAGES, g)
    labels = torch.randint(0, 10, (TRAIN_IMAGES,), generator=g)
    train = (images.to(device), labels.to(device))
    test = (train[0][:TEST_IMAGES], train[1][:TEST_IMAGES])
    ctx = RunContext(rank=0, world=1, device=device, dp_ids=None, quiet=True)

    def one_epoch(trainer, args, epoch):
        normalize = Normalize("cifar10", device, memory_format(args))
        train_one_epoch(*trainer, train, normalize, epoch, args, ctx)
        evaluate(*trainer[:2], test, normalize, ctx)

    times = {}
    for b in (32, bit):
        args = run_args(arch, b, extra)
        trainer = make_trainer(args, device)
        times[b] = [seconds(partial(one_epoch, trainer, args, e), device=device)
                    for e in range(epochs)]
    return times, -(-TRAIN_IMAGES // args.batch_size)


def projection_times(bit, device, reps=20):
    levels = activation_levels(bit).to(device)
    mids = midpoints(levels)
    x = torch.rand(128, 16, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    ours = maybe_compile(project)

    def brute():
        flat = x.reshape(-1)
        return levels[(flat.unsqueeze(0) - levels.unsqueeze(1)).abs().argmin(0)].view_as(x)

    # They may differ only for inputs within float32 rounding of a midpoint.
    differ = (ours(x, levels, mids) != brute()).sum().item()
    return (seconds(lambda: ours(x, levels, mids), reps, device), seconds(brute, reps, device),
            differ)


def data_epoch_time(data_dir, batch, device):
    try:
        train_x = load_cifar(data_dir, download=False)[0]
        source = f"CIFAR-10 in {data_dir}"
    except DataError:
        train_x = random_images(TRAIN_IMAGES, None)
        source = f"{TRAIN_IMAGES:,d} random images"
    train_x = train_x.to(device)
    train_y = torch.zeros(len(train_x), dtype=torch.long, device=device)
    normalize = Normalize("cifar10", device)

    def one_epoch():
        for images, _ in train_batches(train_x, train_y, batch, seed=0, epoch=0):
            normalize(images)

    return seconds(one_epoch, device=device), -(-len(train_x) // batch), source


def report_epochs(times, steps, bit):
    """Prints each model's epochs; returns them for the summary: {"epochs": {bit: {seconds,
    first, median, stage_minutes}}, "epoch_ratio": b-bit/FP32 median (with 2 or more epochs)}."""
    epochs = {}
    for b, t in times.items():
        name = stage_name(b)
        rest = statistics.median(t[1:]) if len(t) > 1 else t[0]
        stage = (t[0] + (STAGE_EPOCHS - 1) * rest) / 60
        print(f"{name} epoch ({steps} training steps + test pass): first {t[0]:.1f} s (compilation "
              f"included), then median {rest:.2f} s; a {STAGE_EPOCHS}-epoch stage ~{stage:.1f} min")
        epochs[str(b)] = dict(seconds=t, first=t[0], median=rest, stage_minutes=stage)
    summary = {"epochs": epochs}
    if len(times[32]) > 1:
        ratio = statistics.median(times[bit][1:]) / statistics.median(times[32][1:])
        print(f"{bit}-bit/FP32 epoch ratio: {ratio:.2f}")
        summary["epoch_ratio"] = ratio
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="res20")
    p.add_argument("--bit", default=4, type=int, choices=SUPPORTED_BITS)
    p.add_argument("--steps", default=20, type=int, help="timed steps per model")
    p.add_argument("--batch", default=128, type=int)
    p.add_argument("--data", default="./data", help="folder with cifar-10-batches-py/ (optional)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", default=0, type=int, help="whole epochs to time per model")
    p.add_argument("--tf32", action="store_true", help="TensorFloat-32 convolutions on GPUs")
    p.add_argument("--compile-model", action="store_true",
                   help="time the models as main.py --compile-model runs them")
    p.add_argument("--bn-groups", default=1, type=int, metavar="K",
                   help="time the models as main.py --bn-groups K trains them")
    p.add_argument("--summary", default="", metavar="JSON",
                   help="also write the numbers printed into this JSON file")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--layouts", nargs="+", type=int, metavar="BIT",
                      choices=[*SUPPORTED_BITS, 32],
                      help="only time these models' steps in NCHW against channels_last")
    only.add_argument("--compiled", nargs="+", type=int, metavar="BIT",
                      choices=[*SUPPORTED_BITS, 32],
                      help="only time these models' steps eager against --compile-model")
    args = p.parse_args(argv)
    if args.compiled and args.compile_model:
        p.error("--compiled times both; leave out --compile-model")
    extra = ["--bn-groups", str(args.bn_groups)] + (["--compile-model"] if args.compile_model
                                                    else [])
    device = torch.device(args.device)
    arithmetic = set_float32_arithmetic(args.tf32)
    where = (f"{torch.cuda.get_device_name(device)}, {arithmetic}"
             if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {where}, {args.arch}, batch {args.batch}"
          + (f", --bn-groups {args.bn_groups}" if args.bn_groups > 1 else "")
          + (", whole model compiled (--compile-model)" if args.compile_model else ""))
    summary = dict(torch=torch.__version__, where=where, arch=args.arch, batch=args.batch,
                   bn_groups=args.bn_groups, compile_model=args.compile_model, steps=args.steps)
    for kind in VARIANTS:
        if getattr(args, kind):
            summary[VARIANTS[kind][0]] = report_variants(kind, args.arch, getattr(args, kind),
                                                         args.steps, args.batch, device, extra)
            return write_summary(args.summary, summary)

    ours, brute, differ = projection_times(args.bit, device)
    print(f"projection of a 128x16x32x32 tensor onto {2**args.bit} levels: "
          f"ours {ours * 1e3:.2f} ms, "
          f"brute-force |levels| x N {brute * 1e3:.2f} ms: {brute / ours:.1f}x faster "
          f"({differ} of 2,097,152 results differ: midpoint ties)")

    fp32, quant = step_times(args.arch, args.bit, args.steps, args.batch, device, extra)
    data, steps, source = data_epoch_time(args.data, args.batch, device)
    print(f"making an epoch's batches ({source}): {data:.2f} s = "
          f"{100 * data / (fp32 * steps):.1f}% "
          f"of an FP32 epoch's {steps} steps ({fp32 * steps:.0f} s)")
    print(f"training step: FP32 {fp32 * 1e3:.0f} ms, {args.bit}-bit {quant * 1e3:.0f} ms "
          f"(median of {args.steps} interleaved steps each)")
    summary.update(bit=args.bit, projection_ms=dict(ours=ours * 1e3, brute_force=brute * 1e3,
                                                    differ=differ),
                   step_ms={"32": fp32 * 1e3, str(args.bit): quant * 1e3}, step_ratio=quant / fp32,
                   batches_epoch_s=data, steps_per_epoch=steps, batches_source=source)
    if args.epochs:
        summary.update(report_epochs(*epoch_times(args.arch, args.bit, args.epochs, device,
                                                  extra), args.bit))
    print(f"{args.bit}-bit/FP32 step ratio: {quant / fp32:.2f}")
    write_summary(args.summary, summary)


def write_summary(path, summary):
    """--summary: the numbers printed, as JSON (docs/speed.md's tables are made from these)."""
    if path:
        write_json(path, summary)


if __name__ == "__main__":
    main()
