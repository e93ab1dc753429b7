"""Weight level usage per layer: for every quantized conv of one or more checkpoints, the learned
weight clipping threshold alpha_w and the share of the weights on each level magnitude, side by
side (for instance our 2-bit model beside the authors', to see where two runs differ).

    python tools/level_usage.py CKPT [CKPT ...] [--bit B] [-a res20] [--data DIR [--limit N]]

A weight counts on the level its magnitude projects to in the forward pass: clamp(normalised
weight / alpha_w, -1, 1), nearest level, ties to the lower one.

With --data, the first --limit test images run through each model first, and a layer's shares
count only the weights of input channels that carry signal: a channel whose quantized input is
0 on every one of those images (after a BatchNorm whose gamma training drove to 0, say) is
silent, its weights multiply zeros, and the column "silent" says how many a layer has.
"""
import argparse

import torch

from apot.cli import ArgumentParser, cli_main, positive_int
from apot.export import load_quantized_model
from apot.intmath import integer_terms
from apot.intmodel import modules_of_type
from apot.levels import SUPPORTED_BITS, weight_levels
from apot.projection import compilation
from CIFAR.export import VARIANT


def silent_inputs(model, batches):
    """{layer: bool per input channel}: True where the layer's quantized input is 0 on every
    image of batches."""
    live, hooks = {}, []

    def record(name):
        def hook(conv, inputs):
            seen = (conv.quantize_input(inputs[0]) != 0).any(dim=(0, 2, 3))
            live[name] = live[name] | seen if name in live else seen
        return hook

    for name, conv in modules_of_type(model, VARIANT.conv_type).items():
        hooks.append(conv.register_forward_pre_hook(record(name)))
    with torch.no_grad(), compilation(False):  # a few batches: compiling would not pay off
        for x, _ in batches:
            model(x)
    for h in hooks:
        h.remove()
    return {name: ~seen for name, seen in live.items()}


def level_shares(model, silent=None):
    """{layer: (alpha_w, shares)}: shares[i] is the fraction of the layer's weights whose
    magnitude projects onto weight level i (the level index the integer export stores),
    counting only the input channels that silent (if given) does not mark; None for a
    layer whose every input is silent."""
    out = {}
    for name, m in modules_of_type(model, VARIANT.conv_type).items():
        t = integer_terms(m)
        idx = t["index"] if silent is None else t["index"][:, ~silent[name]]
        idx = idx.flatten()
        counts = torch.bincount(idx, minlength=len(t["w_ints"]))
        out[name] = (t["w_alpha"], (counts.double() / idx.numel()).tolist()
                     if idx.numel() else None)
    return out


def run(args):
    runs, batches = [], {}  # batches: the test images, read once per number of classes
    for path in args.checkpoints:
        model, meta = load_quantized_model(path, VARIANT, args.arch, args.bit, "apot")
        silent = None
        if args.data:
            classes = meta["num_classes"]
            if classes not in batches:
                batches[classes] = list(VARIANT.eval_batches(
                    argparse.Namespace(data=args.data, limit=args.limit, batch=500), classes)[1])
            silent = silent_inputs(model, batches[classes])
        runs.append((path, meta["bit"], level_shares(model, silent), silent))
    live = f" of the input channels live on {args.limit} test images" if args.data else ""
    for i, (path, bit, _, _) in enumerate(runs):
        levels = " ".join(f"{v:.3g}" for v in weight_levels(bit).tolist())
        print(f"[{i}] {path}: {bit}-bit, share of weights{live} (%) on the levels {levels}")
    column = " | silent" if args.data else ""
    print(f"{'layer':24s} " + "   ".join(f"[{i}] alpha_w | shares{column}"
                                         for i in range(len(runs))))
    for layer in runs[0][2]:
        cells = []
        for _, bit, shares, silent in runs:
            alpha, s = shares[layer]
            cell = f"{alpha:7.3f} | " + " ".join(f"{100 * v:5.1f}" if s else "    -"
                                                 for v in (s or weight_levels(bit)))
            if silent is not None:
                cell += f" | {int(silent[layer].sum()):2d}/{len(silent[layer])}"
            cells.append(cell)
        print(f"{layer:24s} " + "   ".join(cells))


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("-a", "--arch", default=VARIANT.default_arch, choices=sorted(VARIANT.archs))
    p.add_argument("--bit", type=int, choices=SUPPORTED_BITS, default=None,
                   help="bit-width (needed for checkpoints that do not record it)")
    p.add_argument("--data", default="", help="CIFAR folder: count only the input channels "
                   "that carry signal on the first --limit test images")
    p.add_argument("--limit", type=positive_int, default=1000,
                   help="test images that decide which input channels are silent")
    cli_main(p, run, argv)


if __name__ == "__main__":
    main()
