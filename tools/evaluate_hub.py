"""Our trained CIFAR-10 models loaded through torch.hub, on the full CIFAR-10 test set, beside the
accuracy their model_best.pth.tar records (the README table's best). From the repository root:

    python tools/evaluate_hub.py ../shared/data/cifar10 [--arch res20] > result/hub/res20.txt

Every finished stage of the network's reference chain (result/reference/<arch>_<bit>bit with
all 300 epochs logged) is evaluated; one the hub does not list yet is an error.
"""
import argparse

import torch

from apot.cli import positive_int
from CIFAR.data import Normalize, load_cifar
from tools.runs import find_runs, finished_runs, run_folder

REFERENCE = "result/reference"
ENTRIES = {"res20": "apot_resnet20", "res56": "apot_resnet56"}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="the CIFAR-10 folder (holding cifar-10-batches-py)")
    p.add_argument("--arch", default="res20", choices=sorted(ENTRIES))
    p.add_argument("--epochs", default=300, type=positive_int, help="epochs of a finished stage")
    return p


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    bits = list(finished_runs(find_runs(REFERENCE, args.arch), args.epochs))
    if not bits:
        raise SystemExit(f"error: no finished {args.arch} stage under {REFERENCE} yet")
    _, _, x, y = load_cifar(args.data, download=False, train=False)
    normalize = Normalize("cifar10", "cpu")
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; "
          "full CIFAR-10 test set")
    entry = ENTRIES[args.arch]
    for bit in bits:
        model = torch.hub.load(".", entry, source="local", bit=bit, pretrained=True)
        best = torch.load(run_folder(REFERENCE, args.arch, bit) / "model_best.pth.tar",
                          weights_only=True)["best_prec"]
        with torch.no_grad():
            hits = sum((model(normalize(x[i:i + 100])).argmax(1) == y[i:i + 100]).sum().item()
                       for i in range(0, len(x), 100))
        print(f"{entry} bit={bit}: top-1 {100 * hits / len(x):.2f}; model_best.pth.tar "
              f"records {best:.2f}", flush=True)


if __name__ == "__main__":
    main()
