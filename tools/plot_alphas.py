"""Learned clipping thresholds of every quantized layer: our quantized stages beside the authors'.

    python tools/plot_alphas.py [--results result/reference] [--arch res20] [--epochs 300]
        [--official $APOT_DATA/apot-official-res20] [--out RESULTS/res20_alphas.png]

Reads RESULTS/<arch>_<b>bit/model_best.pth.tar for b = 4, 3, 2 where present, and the
authors' <arch>_<b>bit.pth.tar from --official where present; one panel for the activation
alphas, one for the weight alphas (in units of the normalised weight's standard deviation),
layers in network order. Also prints the values as a table.
"""
import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apot.checkpoint import load_checkpoint, strip_module_prefix  # noqa: E402
from apot.cli import data_root  # noqa: E402
from apot.runfolder import stage_name  # noqa: E402
from tools.runs import add_run_arguments, check_folder, run_folder  # noqa: E402

BITS = (4, 3, 2)
ACT, WGT = ".act_alpha", ".weight_quant.wgt_alpha"


def layer_alphas(path):
    """{layer: (activation alpha, weight alpha)} in network order."""
    sd = strip_module_prefix(load_checkpoint(path)["state_dict"])
    return {k[:-len(ACT)]: (v.item(), sd[k[:-len(ACT)] + WGT].item())
            for k, v in sd.items() if k.endswith(ACT)}


def trained_epochs(run_dir):
    last = run_dir / "checkpoint.pth.tar"
    return load_checkpoint(last)["epoch"] if last.is_file() else None


def find_checkpoints(results, official, arch, stage_epochs):
    found = {}
    for bit in BITS:
        ours = run_folder(results, arch, bit) / "model_best.pth.tar"
        theirs = Path(official) / f"{arch}_{bit}bit.pth.tar"
        epochs = trained_epochs(ours.parent)
        if ours.is_file():  # a stage still training says so in its label
            part = "" if epochs in (None, stage_epochs) else f" ({epochs} of {stage_epochs} epochs)"
            found[f"ours {stage_name(bit)}{part}"] = (bit, layer_alphas(ours))
        if theirs.is_file():
            found[f"authors' {stage_name(bit)}"] = (bit, layer_alphas(theirs))
    return found


def plot(found, arch, out):
    layers = next(iter(found.values()))[1].keys()
    # ResNet-20's 20 layers fill 9 inches; deeper networks widen so the tick labels stay apart
    fig, axes = plt.subplots(2, 1, figsize=(max(9, 0.26 * len(layers)), 6.5), sharex=True)
    colours = {4: "tab:blue", 3: "tab:orange", 2: "tab:green"}
    for label, (bit, alphas) in found.items():
        mine = label.startswith("ours")
        style = dict(color=colours[bit], marker="o" if mine else "x", ms=4, lw=1.2,
                     ls="-" if mine else "--", label=label)
        for ax, i in zip(axes, (0, 1)):
            ax.plot(range(len(alphas)), [a[i] for a in alphas.values()], **style)
    axes[0].set_ylabel("activation alpha")
    axes[1].set_ylabel("weight alpha (std units)")
    axes[1].set_xticks(range(len(layers)))
    axes[1].set_xticklabels([n.replace("layer", "") for n in layers], rotation=70, fontsize=7)
    axes[0].set_title(f"{arch}: learned clipping thresholds per quantized conv")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(p)
    p.add_argument("--official",
                   help="the authors' <arch>_<b>bit.pth.tar files (default: "
                        "$APOT_DATA/apot-official-res20, skipped where it is absent)")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    check_folder("--results", args.results)
    if args.official is None:
        args.official = os.path.join(data_root(), "apot-official-res20")
    else:
        check_folder("--official", args.official)
    found = find_checkpoints(args.results, args.official, args.arch, args.epochs)
    if not found:
        raise SystemExit(f"error: no quantized {args.arch} checkpoint under {args.results} or "
                         f"{args.official}")
    out = args.out or str(Path(args.results) / f"{args.arch}_alphas.png")
    plot(found, args.arch, out)
    print("activation alpha / weight alpha per quantized conv:")
    print(f"{'layer':22s}" + "".join(f"{label:>32s}" for label in found))
    for layer in next(iter(found.values()))[1]:
        print(f"{layer:22s}" + "".join(f"{a[layer][0]:>22.3f} /{a[layer][1]:7.3f}"
                                       for _, a in found.values()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
