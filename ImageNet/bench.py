"""Training throughput of the ImageNet ResNets at 32 and b bits, as one run's ratio.

    python ImageNet/bench.py [--arch resnet18] [--bit 4] [--batch 32] [--steps 5] [--tf32]

Steps on random images of the training crop's size (no data loading), FP32 and b-bit steps
interleaved, median of each; on the GPU when one is present (add --amp --channels-last as a
training run would), in IEEE FP32 unless --tf32, as main.py.
"""
import argparse
from functools import partial

import torch

from apot.devices import set_float32_arithmetic
from apot.levels import SUPPORTED_BITS
from apot.runfolder import stage_name
from apot.timing import interleaved_medians
from ImageNet.data import IMAGE_SIZE
from ImageNet.main import build_model, get_args_parser


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--bit", default=4, type=int, choices=SUPPORTED_BITS)
    p.add_argument("--batch", default=32, type=int)
    p.add_argument("--steps", default=5, type=int)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--tf32", action="store_true", help="TensorFloat-32 convolutions on GPUs")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arithmetic = set_float32_arithmetic(args.tf32)
    x = torch.randn(args.batch, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    trainers = {}
    for bit in (32, args.bit):
        # main.py's own arguments (--data is not read), so the model is built as it builds it
        flags = ["--data", "", "-a", args.arch, "--bit", str(bit)]
        run = get_args_parser().parse_args(flags + ["--channels-last"] * args.channels_last)
        model = build_model(run, 1000).to(device).train()
        trainers[bit] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))

    def step(bit):
        model, opt = trainers[bit]
        with torch.autocast(device.type, enabled=args.amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    med = interleaved_medians({b: partial(step, b) for b in trainers}, args.steps, device)
    name = (f"{torch.cuda.get_device_name()} ({arithmetic})"
            if device.type == "cuda" else "CPU")
    print(f"{args.arch}, batch {args.batch}, {IMAGE_SIZE}x{IMAGE_SIZE}, {name}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for b, t in med.items():
        print(f"{stage_name(b)}: {args.batch / t:.1f} images/s ({t * 1e3:.0f} ms a step)")
    print(f"{args.bit}-bit/FP32 step ratio: {med[args.bit] / med[32]:.2f}")


if __name__ == "__main__":
    main()
