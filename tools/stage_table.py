"""docs/reproduction.md's table of how a chain's stages ran: each stage's lr and weight decay
(its args.json), the CPUs its epochs ran on and their median seconds per epoch, and the stage's
logged hours (its log.csv), with the CPU of each epoch read from the chain's output.

    python tools/stage_table.py --arch res56 [--results result/reference]
    python tools/stage_table.py --arch res56 --update docs/reproduction.md

The chain's output is RESULTS/<arch>_chain.out, everything `CIFAR/run.sh` printed, appended to
at every start and resume after a line `== chain resumed DATE TIME at COMMIT on CPU` (the CPU
ends at a ` with ...` that says how the resume differs, such as a flag added). Each `epoch N:`
line that follows a stage's `== ... stage:` line belongs to that stage and to the CPU of the
last such line. An epoch trained twice (a new clone resuming from an older committed
checkpoint) counts where it ran last, as its row in log.csv does. An epoch that no CPU line
precedes is "not recorded".
"""
import argparse
import re
import statistics
from pathlib import Path

from apot.runfolder import stage_name
from tools.docblock import markers as block_markers, update_or_print
from tools.runs import STAGES, check_folder, find_runs, stage_args

CPU_LINE = re.compile(r"== chain (?:started|resumed) \S+ \S+ at \S+ on (.+?)(?: with .*)?")
STAGE_LINE = re.compile(r"== .* stage: (?:starting in|continuing) \S*_(\d+)bit\b")
EPOCH_LINE = re.compile(r"epoch (\d+):")
NOT_RECORDED = "not recorded"


def markers(arch):
    return block_markers(f"stage-table {arch}", f"tools/stage_table.py --arch {arch} --update")


def epoch_cpus(chain_out):
    """{(bit, epoch): CPU} of every epoch line of a chain's output, the last run of each."""
    cpus, cpu, bit = {}, NOT_RECORDED, None
    for line in Path(chain_out).read_text().splitlines():
        if m := CPU_LINE.fullmatch(line):
            cpu, bit = m.group(1).strip(), None
        elif m := STAGE_LINE.match(line):
            bit = int(m.group(1))
        elif (m := EPOCH_LINE.match(line)) and bit is not None:
            cpus[bit, int(m.group(1))] = cpu
    return cpus


def epoch_ranges(epochs):
    """'0-48, 60, 62-70' of a sorted list of epochs."""
    spans = []
    for e in epochs:
        if spans and e == spans[-1][1] + 1:
            spans[-1][1] = e
        else:
            spans.append([e, e])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def short(number):
    """0.1 -> '0.1', 0.0005 -> '5e-4': the recipe's numbers as docs/method.md writes them."""
    if number >= 0.01 or number == 0:
        return f"{number:g}"
    mantissa, exponent = f"{number:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def stage_row(bit, rows, args, cpus):
    """The cells of one stage: its recipe, each CPU with its epochs and median s/epoch, the
    median over all its epochs and the logged hours."""
    seconds = {int(r["epoch"]): float(r["seconds"]) for r in rows}
    by_cpu = {}
    for epoch in sorted(seconds):
        by_cpu.setdefault(cpus.get((bit, epoch), NOT_RECORDED), []).append(epoch)
    hosts = "; ".join(f"{cpu}: epochs {epoch_ranges(epochs)} "
                      f"(median {statistics.median(seconds[e] for e in epochs):.0f})"
                      for cpu, epochs in by_cpu.items())
    recipe = f"{short(args['lr'])}, {short(args['weight_decay'])}" if args else "no args.json"
    return (stage_name(bit), recipe, str(len(rows)), hosts,
            f"{statistics.median(seconds.values()):.0f}", f"{sum(seconds.values()) / 3600:.1f}")


def table(results, arch):
    """The markdown table of arch's stages under results, from their files."""
    check_folder("--results", results)
    chain_out = Path(results) / f"{arch}_chain.out"
    cpus = epoch_cpus(chain_out) if chain_out.is_file() else {}
    runs = find_runs(results, arch)
    lines = ["| stage | lr, wd | epochs logged | CPU: epochs (median s/epoch) | median s/epoch "
             "| logged hours |", "|---|---|---|---|---|---|"]
    for bit in (b for b in STAGES if b in runs):
        lines.append("| " + " | ".join(stage_row(bit, runs[bit], stage_args(results, arch, bit),
                                                 cpus)) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="result/reference",
                   help="the folder of the run folders and the chain's output")
    p.add_argument("--arch", default="res56")
    p.add_argument("--update", default="", metavar="DOC",
                   help="write the table into this file's stage-table block instead of printing")
    args = p.parse_args(argv)
    update_or_print(table(args.results, args.arch), args.update, *markers(args.arch),
                    "stage table")


if __name__ == "__main__":
    main()
