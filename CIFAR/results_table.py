"""The README's reproducibility table, computed from the run folders' log.csv files.

    python CIFAR/results_table.py [--results result] [--arch res20] [--epochs 300]

One markdown row per stage (FP32, 4, 3, 2 bits): epochs done, our best test accuracy and its
epoch (what model_best.pth.tar holds), the final epoch's accuracy, the drop of our best from our
FP32 best, the median wall time of an epoch, then the reference numbers of APOT_SPEC.md (the
paper, the authors' README, an independent rerun of the authors' code: not ours). A stage that
has not reached --epochs says so instead of a final accuracy or a drop.

Below the table, for each finished stage, the spread of its test accuracy over the last lr
phase (from epoch 225 on, where the step schedule's lr is 0.001 of the stage's): how far apart
the best and any other epoch of a nearly converged run are, from test-set noise alone.
"""
import argparse
import statistics

from apot.training import stage_name
from CIFAR.main import LR_STEPS
from CIFAR.plot_curves import find_runs

STAGES = (32, 4, 3, 2)
REFERENCE = {  # ResNet-20 on CIFAR-10, as APOT_SPEC.md prints them: (paper, README, rerun)
    32: ("91.6", "92.96", "92.90"), 4: ("92.3", "92.45", "92.56"), 3: ("92.2", "92.49", "92.53"),
    2: ("91.0", "90.96", "91.02"),
}
COLUMNS = ("stage", "epochs", "our best (epoch)", "our final", "drop from our FP32",
           "s/epoch (median)", "paper", "authors' README", "rerun of the authors' code")


def stage_cells(rows, epochs, fp32_best):
    """(epochs, best, final, drop, seconds) cells of one stage's log rows."""
    acc = [float(r["test_acc"]) for r in rows]
    best = max(acc)
    best_epoch = int(rows[acc.index(best)]["epoch"])  # the first epoch that reached it
    seconds = statistics.median(float(r["seconds"]) for r in rows)
    done = len(rows) >= epochs
    final = f"{acc[-1]:.2f}" if done else "not finished"
    drop = f"{fp32_best - best:+.2f}" if done and fp32_best is not None else ""
    return (f"{len(rows)}/{epochs}", f"{best:.2f} ({best_epoch})", final, drop, f"{seconds:.0f}")


def table(runs, epochs):
    fp32 = runs.get(32)
    fp32_best = (max(float(r["test_acc"]) for r in fp32)
                 if fp32 and len(fp32) >= epochs else None)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for bit in STAGES:
        ours = (stage_cells(runs[bit], epochs, None if bit == 32 else fp32_best)
                if bit in runs else ("not run yet", "", "", "", ""))
        lines.append("| " + " | ".join((stage_name(bit), *ours, *REFERENCE[bit])) + " |")
    return "\n".join(lines)


def last_phase_spread(runs, epochs, start):
    """One line per finished stage: mean, sd, min and max test accuracy from epoch `start` on."""
    lines = []
    for bit in STAGES:
        rows = runs.get(bit, [])
        if len(rows) < epochs:
            continue
        acc = [float(r["test_acc"]) for r in rows if int(r["epoch"]) >= start]
        lines.append(f"{stage_name(bit)}, epochs {start}-{epochs - 1}: test accuracy mean "
                     f"{statistics.mean(acc):.2f}, sd {statistics.stdev(acc):.2f}, "
                     f"min {min(acc):.2f}, max {max(acc):.2f}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="result")
    p.add_argument("--arch", default="res20")
    p.add_argument("--epochs", default=300, type=int, help="epochs of a finished stage")
    args = p.parse_args()
    runs = find_runs(args.results, args.arch)
    print(table(runs, args.epochs))
    spread = last_phase_spread(runs, args.epochs, LR_STEPS[-1])
    if spread:
        print("\n" + spread)


if __name__ == "__main__":
    main()
