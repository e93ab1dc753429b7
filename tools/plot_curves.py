"""Test-accuracy curves of every CIFAR run folder found, from their log.csv files.

    python tools/plot_curves.py [--results result/reference] [--arch res20] [--epochs 300]
        [--out RESULTS/res20_curves.png]

Picks up whatever stages exist (RESULTS/<arch>_<bit>bit/log.csv), so rerunning it as the chain
goes on adds the later stages by itself.
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apot.runfolder import stage_name  # noqa: E402
from tools.runs import add_run_arguments, last_phase_start, load_runs  # noqa: E402


def plot(runs, arch, out, epochs):
    """Whole runs on the left; the last lr phase of an `epochs`-epoch stage (225-299 in the
    recipe, lr x0.01), where the stages lie within a point of each other, zoomed on the right."""
    first, final = last_phase_start(epochs), epochs - 1
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw=dict(width_ratios=[3, 2]))
    for bit, rows in runs.items():
        done = [int(r["epoch"]) for r in rows]  # `epochs` is the stage's length
        acc = [float(r["test_acc"]) for r in rows]
        line, = ax.plot(done, acc, lw=1.2,
                        label=f"{stage_name(bit)}: best {max(acc):.2f}, {len(rows)} epochs")
        last = [(e, a) for e, a in zip(done, acc) if first <= e <= final]
        if last:
            zoom.plot(*zip(*last), lw=1.2, color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{arch} on CIFAR-10, our runs (CIFAR/run.sh)")
    lowest = min(float(r["test_acc"]) for rows in runs.values() for r in rows)
    ax.set_ylim(bottom=max(0, lowest - 2))
    ax.legend(loc="lower right")
    zoom.set_xlim(first, max(final, first + 1))
    zoom.set_xlabel("epoch")
    zoom.set_title(f"last lr phase, epochs {first}-{final}")
    for a in (ax, zoom):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(p)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    runs = load_runs(args)
    if not runs:
        raise SystemExit(f"error: no {args.arch}_*bit/log.csv under {args.results}")
    out = args.out or str(Path(args.results) / f"{args.arch}_curves.png")
    plot(runs, args.arch, out, args.epochs)
    print(f"wrote {out}: " + ", ".join(f"{stage_name(b)} {len(r)} epochs" for b, r in runs.items()))


if __name__ == "__main__":
    main()
