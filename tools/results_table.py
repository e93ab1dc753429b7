"""The README's reproducibility table, computed from the run folders' log.csv files.

    python tools/results_table.py [--results result/reference] [--arch res20] [--epochs 300]

    python tools/results_table.py --update README.md   # rewrites only the README's block
    python tools/results_table.py --arch res56 --update README.md   # the ResNet-56 block
    python tools/results_table.py --finished           # e.g. "32 4": the finished stages
    python tools/results_table.py --gaps               # the numbers "where we differ" cites
    python tools/results_table.py --phases             # and the shape of each lr phase

One markdown row per stage (FP32, 4, 3, 2 bits): epochs done, our best test accuracy and its
epoch (what model_best.pth.tar holds), the final epoch's accuracy, the mean and sd of the test
accuracy over the last lr phase, the drops of our best and of our mean from our FP32's, the
median wall time of an epoch, then the reference numbers of docs/method.md (the paper with its
drop from the paper's FP32, the authors' README, an independent rerun of the authors' code: not
ours). A stage that has not reached --epochs says so instead of a final accuracy or a drop; a
log longer than --epochs is an error. A line below the table gives the set-up the stages'
args.json record (--bn-groups, memory format). Each --arch has its own README block.

Below the table, for each finished stage, the spread of its test accuracy over the last lr
phase (from epoch 225 on, where the step schedule's lr is 0.01 of the stage's): how far apart
the best and any other epoch of a nearly converged run are, from test-set noise alone. main.py's
lr milestones do not move with --epochs, so a shorter stage's last phase starts at the last
milestone it reaches (150 for 200 epochs, 0 for fewer than 151).

--gaps prints, for each finished stage, how our best compares with our last-phase mean and with
each reference (also in units of the last-phase sd), and for a quantized stage how its drop from
FP32 compares with the references' drops, the gap to each split into its FP32 part and the
stage's own part: the arithmetic of docs/reproduction.md's "where we differ", done once.

--phases prints, for every stage logged so far, each run of epochs at one lr (as log.csv records
it): the test accuracy's peak and last value and its mean over each half of the phase, the test
loss's minimum and last value, and the training accuracy's mean and last value (on augmented
batches): how a phase rose, peaked or sagged, which "where we differ" describes.
"""
import argparse
import itertools
import statistics

from apot.runfolder import stage_name
from tools.docblock import markers as block_markers, update_or_print
from tools.references import cifar10_references
from tools.runs import (STAGES, add_run_arguments, best_accuracy, finished_runs, last_phase,
                        last_phase_start, load_runs, phase_stats, stage_args)


COLUMNS = ("stage", "epochs", "our best (epoch)", "our final", "our last-phase mean (sd)",
           "drop of our best", "drop of our mean", "s/epoch (median)", "paper (drop)",
           "authors' README", "rerun of the authors' code")


def markers(arch):
    """The lines around an architecture's table in the README."""
    return block_markers(f"results-table {arch}", f"tools/results_table.py --arch {arch} --update")


def stage_cells(rows, epochs, fp32, start):
    """The cells of one stage's log rows; fp32 = (best, last-phase mean) of a finished FP32
    stage, or None. Final accuracy, last-phase mean and drops only for a finished stage."""
    acc = [float(r["test_acc"]) for r in rows]
    best = max(acc)
    best_epoch = int(rows[acc.index(best)]["epoch"])  # the first epoch that reached it
    seconds = statistics.median(float(r["seconds"]) for r in rows)
    if len(rows) < epochs:
        return (f"{len(rows)}/{epochs}", f"{best:.2f} ({best_epoch})", "not finished", "", "",
                "", f"{seconds:.0f}")
    mean, sd = phase_stats(last_phase(rows, start))
    drops = (f"{fp32[0] - best:+.2f}", f"{fp32[1] - mean:+.2f}") if fp32 else ("", "")
    return (f"{len(rows)}/{epochs}", f"{best:.2f} ({best_epoch})", f"{acc[-1]:.2f}",
            f"{mean:.2f} ({sd:.2f})", *drops, f"{seconds:.0f}")


def references(arch):
    """{bit: (paper, README, rerun)} of docs/method.md for arch."""
    refs = cifar10_references()
    if arch not in refs:
        raise SystemExit(f"error: no reference numbers for --arch {arch}: the paper's CIFAR-10 "
                         f"table has {' and '.join(refs)}")
    return refs[arch]


def reference_cells(bit, refs):
    paper, readme, rerun = refs[bit]
    drop = "" if bit == 32 else f" ({float(refs[32][0]) - float(paper):+.1f})"
    return (paper + drop, readme, rerun)


def setup_line(results, arch, bits):
    """What the stages' args.json record of how they were trained: --bn-groups (absent: 1, the
    runs made before the flag), the memory format (absent: channels_last, the only one then)
    and --alpha-floor where a stage set one (absent: none)."""
    setups = {}
    for bit in bits:
        args = stage_args(results, arch, bit)
        layout = "channels_last" if args.get("channels_last", True) else "NCHW"
        setups[bit] = f"--bn-groups {args.get('bn_groups', 1)}, {layout}"
        if args.get("alpha_floor", 0):
            setups[bit] += f", --alpha-floor {args['alpha_floor']:g}"
    if len(set(setups.values())) == 1:
        return f"Set-up of every stage (args.json): {next(iter(setups.values()))}"
    return "Set-up (args.json): " + "; ".join(f"{stage_name(b)} {s}" for b, s in setups.items())


def table(runs, epochs, start, refs=None):
    """The markdown table: our stages beside refs (default: ResNet-20's)."""
    refs = refs or references("res20")
    fp32 = finished_runs(runs, epochs).get(32)
    fp32_stats = (best_accuracy(fp32), phase_stats(last_phase(fp32, start))[0]) if fp32 else None
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for bit in STAGES:
        ours = (stage_cells(runs[bit], epochs, None if bit == 32 else fp32_stats, start)
                if bit in runs else ("not run yet", "", "", "", "", "", ""))
        lines.append("| " + " | ".join((stage_name(bit), *ours, *reference_cells(bit, refs)))
                     + " |")
    return "\n".join(lines)


def last_phase_spread(runs, epochs, start):
    """One line per finished stage: mean, sd, min and max test accuracy from epoch `start` on."""
    finished, lines = finished_runs(runs, epochs), []
    for bit in (b for b in STAGES if b in finished):
        acc = last_phase(finished[bit], start)
        mean, sd = phase_stats(acc)
        lines.append(f"{stage_name(bit)}, epochs {start}-{epochs - 1}: test accuracy mean "
                     f"{mean:.2f}, sd {sd:.2f}, min {min(acc):.2f}, max {max(acc):.2f}")
    return "\n".join(lines)


def stage_gaps(bit, rows, start, fp32_best, refs):
    """The --gaps lines of one finished stage; fp32_best is our finished FP32's best, or None."""
    name, best = stage_name(bit), best_accuracy(rows)
    mean, sd = phase_stats(last_phase(rows, start))

    def in_sd(diff):
        return f"{diff / sd:+.1f} sd" if sd > 0 else f"sd is {sd:.0f}"

    refs = list(zip(("the paper", "the authors' README", "the rerun"), refs[bit],
                    map(float, refs[bit]), map(float, refs[32])))
    lines = [f"{name}: best {best:.2f}, last-phase mean {mean:.2f} (sd {sd:.2f}): best - mean "
             f"{best - mean:+.2f} ({in_sd(best - mean)})",
             f"{name}: best - reference: " + ", ".join(
                 f"{who} {text} {best - ref:+.2f} ({in_sd(best - ref)})"
                 for who, text, ref, _ in refs)]
    if bit == 32 or fp32_best is None:
        return lines
    return lines + [
        f"{name}: drop of the best from FP32: ours {fp32_best - best:+.2f}, " + ", ".join(
            f"{who}'s {ref32 - ref:+.2f}" for who, _, ref, ref32 in refs),
        f"{name}: their drop minus ours, split into FP32 (theirs minus ours) and {name} (ours "
        "minus theirs): " + "; ".join(
            f"{who} {ref32 - ref - fp32_best + best:+.2f} (FP32 {ref32 - fp32_best:+.2f}, "
            f"{name} {best - ref:+.2f})" for who, _, ref, ref32 in refs)]


def gaps(runs, epochs, start, refs=None):
    """The --gaps lines of every finished stage, against refs (default: ResNet-20's)."""
    refs = refs or references("res20")
    finished = finished_runs(runs, epochs)
    fp32_best = best_accuracy(finished[32]) if 32 in finished else None
    return "\n".join(line for bit in STAGES if bit in finished
                     for line in stage_gaps(bit, finished[bit], start, fp32_best, refs))


def lr_phases(rows):
    """A stage's log rows in runs of one lr, in order."""
    return [list(phase) for _, phase in itertools.groupby(rows, key=lambda r: float(r["lr"]))]


def phase_lines(bit, rows):
    """The --phases lines of one stage: one per lr phase logged."""
    lines = []
    for phase in lr_phases(rows):
        epoch = [int(r["epoch"]) for r in phase]
        acc, loss, train = ([float(r[k]) for r in phase]
                            for k in ("test_acc", "test_loss", "train_acc"))
        half = len(phase) // 2
        halves = (f", mean {statistics.mean(acc[:half]):.2f} over epochs {epoch[0]}-"
                  f"{epoch[half - 1]} and {statistics.mean(acc[half:]):.2f} over "
                  f"{epoch[half]}-{epoch[-1]}") if half else ""
        lines.append(
            f"{stage_name(bit)}, epochs {epoch[0]}-{epoch[-1]} (lr {float(phase[0]['lr']):g}): "
            f"test accuracy peak {max(acc):.2f} (epoch {epoch[acc.index(max(acc))]}), last "
            f"{acc[-1]:.2f}{halves}; test loss min {min(loss):.3f} (epoch "
            f"{epoch[loss.index(min(loss))]}), last {loss[-1]:.3f}; training accuracy mean "
            f"{statistics.mean(train):.2f}, last {train[-1]:.2f}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(p)
    p.add_argument("--update", default="", metavar="README",
                   help="write the table into this file's results block instead of printing it")
    p.add_argument("--finished", action="store_true",
                   help="print only the bit-widths of the stages with all --epochs logged, "
                        "as the scripts under result/ that use finished models read them")
    p.add_argument("--gaps", action="store_true",
                   help="print how each finished stage's best compares with its mean and the "
                        "references, instead of the table")
    p.add_argument("--phases", action="store_true",
                   help="print each lr phase's peak, halves, test loss and training accuracy "
                        "for every stage logged, instead of the table")
    args = p.parse_args(argv)
    runs, start = load_runs(args), last_phase_start(args.epochs)
    if args.finished:
        finished = finished_runs(runs, args.epochs)
        print(" ".join(str(b) for b in STAGES if b in finished))
        return
    if args.phases:
        print("\n".join(line for bit, rows in runs.items() for line in phase_lines(bit, rows)))
        return
    refs = references(args.arch)
    if args.gaps:
        print(gaps(runs, args.epochs, start, refs))
        return
    text = table(runs, args.epochs, start, refs)
    if runs:
        text += "\n\n" + setup_line(args.results, args.arch, runs)
    spread = last_phase_spread(runs, args.epochs, start)
    if spread:
        text += "\n\n" + spread
    update_or_print(text, args.update, *markers(args.arch), "results block")


if __name__ == "__main__":
    main()
