"""Weight level usage per layer: for every quantized conv of one or more checkpoints, the learned
weight clipping threshold alpha_w and the share of the weights on each level magnitude, side by
side (for instance our 2-bit model beside the authors', to see where two runs differ).

    python CIFAR/level_usage.py CKPT [CKPT ...] [--bit B] [-a res20]

A weight counts on the level its magnitude projects to in the forward pass: clamp(normalised
weight / alpha_w, -1, 1), nearest level, ties to the lower one.
"""
import torch

from apot.export import integer_terms, load_quantized_model
from apot.levels import SUPPORTED_BITS, weight_levels
from apot.training import ArgumentParser, cli_main
from CIFAR.export import VARIANT
from CIFAR.quant_layer import QuantConv2d


def level_shares(model):
    """{layer: (alpha_w, shares)}: shares[i] is the fraction of the layer's weights whose
    magnitude projects onto weight level i (the level index the integer export stores)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantConv2d):
            t = integer_terms(m)
            idx = t["index"].flatten()
            counts = torch.bincount(idx, minlength=len(t["w_ints"]))
            out[name] = (t["w_alpha"], (counts.double() / idx.numel()).tolist())
    return out


def run(args):
    runs = []
    for path in args.checkpoints:
        model, meta = load_quantized_model(path, VARIANT, args.arch, args.bit, "apot")
        runs.append((path, meta["bit"], level_shares(model)))
    for i, (path, bit, _) in enumerate(runs):
        levels = " ".join(f"{v:.3g}" for v in weight_levels(bit).tolist())
        print(f"[{i}] {path}: {bit}-bit, share of weights (%) on the levels {levels}")
    print(f"{'layer':24s} " + "   ".join(f"[{i}] alpha_w | shares" for i in range(len(runs))))
    for layer in runs[0][2]:
        cells = []
        for _, _, shares in runs:
            alpha, s = shares[layer]
            cells.append(f"{alpha:7.3f} | " + " ".join(f"{100 * v:5.1f}" for v in s))
        print(f"{layer:24s} " + "   ".join(cells))


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("-a", "--arch", default=VARIANT.default_arch, choices=sorted(VARIANT.archs))
    p.add_argument("--bit", type=int, choices=SUPPORTED_BITS, default=None,
                   help="bit-width (needed for checkpoints that do not record it)")
    cli_main(p, run, argv)


if __name__ == "__main__":
    main()
