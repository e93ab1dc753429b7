"""The command-line layer: one-line errors, checked numeric flags, the flags both main.py
files share, and where scripts and tests find the shared data by default."""
import argparse
import math
import os
import sys

from apot.errors import UserError
from apot.levels import QUANTS, SUPPORTED_BITS
from apot.projection import compilation


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


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one `error: ...` line instead of a usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class TrainingArgumentParser(ArgumentParser):
    """The parser of a main.py; once parsed, an empty --save-dir is the run folder's default,
    result/<arch>_<bit>bit, so that every later reader of args sees the folder the run uses."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        if not parsed.save_dir:
            parsed.save_dir = os.path.join("result", f"{parsed.arch}_{parsed.bit}bit")
        return parsed, rest


def training_parser(description, archs, **defaults):
    """The flags both main.py files share, with these defaults (arch, epochs, batch_size, lr,
    channels_last); each main adds its data and schedule flags."""
    p = TrainingArgumentParser(description=description)
    p.add_argument("-a", "--arch", choices=sorted(archs))
    p.add_argument("--bit", default=4, type=int, choices=[*SUPPORTED_BITS, 32],
                   help="bit-width of weights and activations of the quantized convs (32 = float)")
    p.add_argument("--quant", default="apot", choices=QUANTS,
                   help="level family of the quantized convs")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("-b", "--batch-size", type=positive_int,
                   help="global training batch, split over the processes")
    p.add_argument("--lr", "--learning-rate", type=positive_float, help="base learning rate")
    p.add_argument("--wd", "--weight-decay", dest="weight_decay", default=1e-4,
                   type=non_negative_float)
    p.add_argument("--momentum", default=0.9, type=non_negative_float)
    p.add_argument("--alpha-floor", default=0.0, type=non_negative_float, metavar="F",
                   help="after every step, raise any clipping threshold (alpha) below F to F; "
                        "0: never, as the authors' code, where an alpha stepping through zero "
                        "makes the loss NaN")
    p.add_argument("--bn-groups", default=1, type=int, metavar="K",
                   help="in training, every BatchNorm normalises K slices of the per-process "
                        "batch apart, the first alone updating the running statistics: what "
                        "nn.DataParallel over K GPUs does (the authors' runs: 2)")
    p.add_argument("--init", default="", metavar="PATH",
                   help="start from these weights (alphas may be missing); with -e, evaluate them")
    p.add_argument("--resume", default="", metavar="PATH",
                   help="continue a run exactly from its checkpoint.pth.tar")
    p.add_argument("-e", "--evaluate", action="store_true", help="only evaluate on the test set")
    p.add_argument("--seed", default=0, type=int)
    p.add_argument("-id", "--device", default="0",
                   help="GPU ids; several mean nn.DataParallel (ignored without a GPU)")
    p.add_argument("--save-dir", default="", help="run folder (default result/<arch>_<bit>bit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-download", action="store_true",
                   help="never download (the dataset or pretrained weights): a missing one is an "
                        "error")
    p.add_argument("--no-compile", action="store_true",
                   help="run the quantizers eagerly (no torch.compile warm-up; slower steps)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="model and batches in the channels_last (NHWC) memory format; "
                        "--no-channels-last: NCHW. Same model, other summation order "
                        "(docs/speed.md)")
    p.add_argument("--tf32", action="store_true",
                   help="let GPUs use TensorFloat-32 in convolutions (faster; off: IEEE FP32)")
    p.set_defaults(**defaults)
    return p


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


def data_root():
    """Where this project's scripts and tests look for the shared data by default (the CIFAR-10
    folder cifar10/ and the authors' checkpoints apot-official-res20/): $APOT_DATA, else
    ../shared/data beside the repository."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.environ.get("APOT_DATA") or os.path.join(os.path.dirname(here), "shared", "data")
