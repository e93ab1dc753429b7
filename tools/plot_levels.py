"""Figures of the level sets and of a trained layer's weights (PNG).

    python tools/plot_levels.py [--checkpoint CKPT --bit 4 --layer layer2.0.conv2]
        [--out-dir result/figures]

1. levels.png: the uniform, power-of-two and APoT levels at 3 and 4 bits on one axis (the
   paper's Figure 1 idea: APoT is dense near zero without PoT's empty top).
2. weights_<layer>.png (with --checkpoint): histogram of that layer's normalised weights
   (W - mean) / std, with the quantization levels (alpha * levels, both signs) and +-alpha.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from apot.checkpoint import load_checkpoint, strip_module_prefix  # noqa: E402
from apot.levels import level_set, weight_levels  # noqa: E402


def plot_level_sets(out):
    fig, axes = plt.subplots(2, 1, figsize=(8, 3.6), sharex=True)
    for ax, bits in zip(axes, (3, 4)):
        for row, quant in enumerate(("uniform", "pot", "apot")):
            levels = level_set(bits, quant)
            ax.scatter(levels, [row] * len(levels), marker="|", s=300, lw=1.5)
        ax.set_yticks([0, 1, 2], ["uniform", "PoT", "APoT"])
        ax.set_ylim(-0.6, 2.6)
        ax.set_title(f"{bits}-bit levels in [0, 1] ({2**bits} each)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("level (normalised: alpha = 1)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_weight_histogram(checkpoint, bit, layer, out):
    sd = strip_module_prefix(load_checkpoint(checkpoint)["state_dict"])
    w = sd[f"{layer}.weight"].double()
    alpha = sd[f"{layer}.weight_quant.wgt_alpha"].item()
    w_norm = ((w - w.mean()) / w.std()).flatten()
    levels = weight_levels(bit) * alpha
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.hist(w_norm.numpy(), bins=120, color="0.55")
    for v in torch.cat([-levels, levels]).unique().tolist():
        ax.axvline(v, color="tab:blue", lw=0.8, alpha=0.7)
    for v in (-alpha, alpha):
        ax.axvline(v, color="tab:red", lw=1.6, ls="--")
    ax.set_title(f"{layer}: normalised weights ({w_norm.numel()}), {bit}-bit levels (blue), "
                 f"alpha = {alpha:.2f} (red)", fontsize=10)
    ax.set_xlabel("(W - mean) / std")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="")
    p.add_argument("--bit", type=int, default=4)
    p.add_argument("--layer", default="layer2.0.conv2")
    p.add_argument("--out-dir", default="result/figures")
    args = p.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    plot_level_sets(os.path.join(args.out_dir, "levels.png"))
    print(f"wrote {args.out_dir}/levels.png")
    if args.checkpoint:
        out = os.path.join(args.out_dir, f"weights_{args.layer}_{args.bit}bit.png")
        plot_weight_histogram(args.checkpoint, args.bit, args.layer, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
