"""Our runs as the tables and figures read them: the run folders of one architecture under
--results, their log.csv rows, and the stage's last lr phase.

Each stage is a folder <arch>_<bit>bit (bit 32, 4, 3, 2) with its log.csv. main.py's lr
milestones do not move with --epochs, so a shorter stage's last phase starts at the last
milestone it reaches (150 for 200 epochs, 0 for fewer than 151).
"""
import csv
import json
import re
import statistics
from pathlib import Path

from apot.cli import positive_int
from CIFAR.main import LR_STEPS

STAGES = (32, 4, 3, 2)


def find_runs(results, arch):
    """{bit: log.csv rows} of every RESULTS/<arch>_<bit>bit run folder with a non-empty log,
    highest bit-width first."""
    runs = {}
    for log in Path(results).glob(f"{arch}_*bit/log.csv"):
        bit = int(re.fullmatch(rf"{arch}_(\d+)bit", log.parent.name).group(1))
        rows = list(csv.DictReader(open(log)))
        if rows:
            runs[bit] = rows
    return dict(sorted(runs.items(), reverse=True))


def run_folder(results, arch, bit):
    """RESULTS/<arch>_<bit>bit: where CIFAR/run.sh puts a stage."""
    return Path(results) / f"{arch}_{bit}bit"


def stage_args(results, arch, bit):
    """The args.json of a stage's run folder as a dict, {} where the run has none."""
    path = run_folder(results, arch, bit) / "args.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def add_run_arguments(p):
    """--results, --arch and --epochs: where the run folders are, whose, and how long a stage is
    (the table's and figures')."""
    p.add_argument("--results", default="result/reference",
                   help="the folder of the run folders (default: our reference runs)")
    p.add_argument("--arch", default="res20")
    p.add_argument("--epochs", default=300, type=positive_int, help="epochs of a finished stage")


def check_folder(flag, path):
    """A mistyped folder would otherwise give a table or figure without its runs, silently."""
    if not Path(path).is_dir():
        raise SystemExit(f"error: {flag} {path} is not a folder")


def load_runs(args):
    """find_runs of --results and --arch, refusing a log longer than --epochs: its last phase
    and final epoch would not be the ones the table and figures name."""
    check_folder("--results", args.results)
    runs = find_runs(args.results, args.arch)
    for bit, rows in runs.items():
        if len(rows) > args.epochs:
            raise SystemExit(f"error: {run_folder(args.results, args.arch, bit)}/log.csv has "
                             f"{len(rows)} epochs, more than --epochs {args.epochs}")
    return runs


def finished_runs(runs, epochs):
    """The runs whose log has all `epochs` epochs."""
    return {bit: rows for bit, rows in runs.items() if len(rows) >= epochs}


def last_phase_start(epochs):
    """The first epoch of the last lr phase of an `epochs`-epoch stage."""
    return max(step for step in (0, *LR_STEPS) if step < epochs)


def last_phase(rows, start):
    return [float(r["test_acc"]) for r in rows if int(r["epoch"]) >= start]


def phase_stats(acc):
    """Mean and sample sd of a phase's test accuracies (sd nan for one epoch)."""
    return statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else float("nan")


def best_accuracy(rows):
    return max(float(r["test_acc"]) for r in rows)
