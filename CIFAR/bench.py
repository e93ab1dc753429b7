"""Speed of the CIFAR training path, as ratios measured in one run (this machine is noisy).

    python CIFAR/bench.py [--arch res20] [--bit 4] [--steps 20] [--data DIR]

1. A training step (batch 128) of the b-bit model against the FP32 one, built and stepped
   exactly as main.py does (same model construction, channels_last, compiled quantizers).
   FP32 and b-bit steps are interleaved and the median of each is compared.
2. Our projection (compiled, as the quantizers use it) against the brute-force |levels| x N
   nearest-level search of the authors, on one activation tensor of the first stage.
3. Making an epoch's batches (shuffle, crop, flip, normalise) against an FP32 epoch's steps,
   on the real training set when --data holds it, else on random images of the same size.
The last line is the step ratio: `<b>-bit/FP32 step ratio: X.XX`.
"""
import argparse
import statistics
import time

import torch

from apot.levels import activation_levels
from apot.projection import maybe_compile, midpoints, project
from CIFAR.data import DataError, Normalize, load_cifar, train_batches
from CIFAR.main import build_model, get_args_parser, make_optimizer, train_step


def make_trainer(bit, arch):
    args = get_args_parser().parse_args(["-a", arch, "--bit", str(bit)])
    torch.manual_seed(0)
    model = build_model(args)
    model.train()
    return model, torch.nn.CrossEntropyLoss(), make_optimizer(model, args)


def seconds(fn, reps=1):
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def step_times(arch, bit, steps, batch):
    normalize = Normalize("cifar10", "cpu")
    g = torch.Generator().manual_seed(0)
    images = normalize(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=g))
    target = torch.randint(0, 10, (batch,), generator=g)
    trainers = {32: make_trainer(32, arch), bit: make_trainer(bit, arch)}
    for trainer in trainers.values():  # warm-up, compilation included
        for _ in range(3):
            train_step(*trainer, images, target)
    times = {32: [], bit: []}
    for _ in range(steps):
        for b, trainer in trainers.items():
            times[b].append(seconds(lambda: train_step(*trainer, images, target)))
    return statistics.median(times[32]), statistics.median(times[bit])


def projection_times(bit, reps=20):
    levels = activation_levels(bit)
    mids = midpoints(levels)
    x = torch.rand(128, 16, 32, 32).contiguous(memory_format=torch.channels_last)
    ours = maybe_compile(project)

    def brute():
        flat = x.reshape(-1)
        return levels[(flat.unsqueeze(0) - levels.unsqueeze(1)).abs().argmin(0)].view_as(x)

    # They may differ only for inputs within float32 rounding of a midpoint.
    differ = (ours(x, levels, mids) != brute()).sum().item()
    return seconds(lambda: ours(x, levels, mids), reps), seconds(brute, reps), differ


def data_epoch_time(data_dir, batch):
    try:
        train_x = load_cifar(data_dir, download=False)[0]
        source = f"CIFAR-10 in {data_dir}"
    except DataError:
        train_x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
        source = "50,000 random images"
    train_y = torch.zeros(len(train_x), dtype=torch.long)
    normalize = Normalize("cifar10", "cpu")

    def one_epoch():
        for images, _ in train_batches(train_x, train_y, batch, seed=0, epoch=0):
            normalize(images)

    return seconds(one_epoch), -(-len(train_x) // batch), source


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="res20")
    p.add_argument("--bit", default=4, type=int, choices=[2, 3, 4, 5])
    p.add_argument("--steps", default=20, type=int, help="timed steps per model")
    p.add_argument("--batch", default=128, type=int)
    p.add_argument("--data", default="./data", help="folder with cifar-10-batches-py/ (optional)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.arch}, batch {args.batch}, CPU")

    ours, brute, differ = projection_times(args.bit)
    print(f"projection of a 128x16x32x32 tensor onto {2**args.bit} levels: ours {ours * 1e3:.2f} ms, "
          f"brute-force |levels| x N {brute * 1e3:.2f} ms: {brute / ours:.1f}x faster "
          f"({differ} of 2,097,152 results differ: midpoint ties)")

    fp32, quant = step_times(args.arch, args.bit, args.steps, args.batch)
    data, steps, source = data_epoch_time(args.data, args.batch)
    print(f"making an epoch's batches ({source}): {data:.2f} s = {100 * data / (fp32 * steps):.1f}% "
          f"of an FP32 epoch's {steps} steps ({fp32 * steps:.0f} s)")
    print(f"training step: FP32 {fp32 * 1e3:.0f} ms, {args.bit}-bit {quant * 1e3:.0f} ms "
          f"(median of {args.steps} interleaved steps each)")
    print(f"{args.bit}-bit/FP32 step ratio: {quant / fp32:.2f}")


if __name__ == "__main__":
    main()
