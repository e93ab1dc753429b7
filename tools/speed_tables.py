"""The CPU tables of docs/speed.md, made from CIFAR/bench.py's JSON summaries (--summary) under
result/cpu_speed/: the training-step, projection and batch-making ratios of one run
(res20_bench.json) and the memory formats of the ResNet-56 steps (res56_layouts.json).

    python tools/speed_tables.py [--results result/cpu_speed] [--docs docs]
    python tools/speed_tables.py --update    # rewrites only docs/speed.md's marked blocks
"""
import argparse
import json
from pathlib import Path

from apot.runfolder import stage_name
from tools.docblock import update_block

ROOT = Path(__file__).resolve().parents[1]


def markers(name):
    return (f"<!-- speed-table {name}: made by tools/speed_tables.py --update -->",
            f"<!-- /speed-table {name} -->")


def network(arch):
    return f"ResNet-{arch.removeprefix('res')}"


def ratios_table(s):
    bit, p = s["bit"], s["projection_ms"]
    fp32, quant = s["step_ms"]["32"], s["step_ms"][str(bit)]
    share = 100 * s["batches_epoch_s"] / (fp32 / 1e3 * s["steps_per_epoch"])
    return "\n".join([
        "| what | measured |", "|---|---|",
        f"| {bit}-bit / FP32 {network(s['arch'])} training step (batch {s['batch']}, built and "
        f"compiled as `main.py` does) | **{quant / fp32:.2f}x** (FP32 {fp32:.0f} ms, {bit}-bit "
        f"{quant:.0f} ms) |",
        "| our projection vs the authors' brute-force \\|levels\\| x N search (128x16x32x32 "
        f"tensor, {2**bit} levels) | **{p['brute_force'] / p['ours']:.0f}x** faster "
        f"({p['ours']:.2f} ms vs {p['brute_force']:.0f} ms) |",
        "| making an epoch's batches (shuffle, crop, flip, normalise) vs an FP32 epoch's steps | "
        f"**{share:.1f}%** |"])


def layouts_table(s):
    steps = s["layout_step_ms"]
    groups = f", `--bn-groups {s['bn_groups']}`" if s["bn_groups"] > 1 else ""
    head = f"| {network(s['arch'])} training step, batch {s['batch']}{groups} | " + " | ".join(
        stage_name(int(b)) for b in steps) + " |"
    rows = [f"| {name} | " + " | ".join(f"{ms[name]:.0f} ms" for ms in steps.values()) + " |"
            for name in ("NCHW", "channels_last")]
    ratio = "| channels_last / NCHW | " + " | ".join(
        f"**{ms['channels_last'] / ms['NCHW']:.2f}**" for ms in steps.values()) + " |"
    return "\n".join([head, "|---" * (len(steps) + 1) + "|", *rows, ratio])


TABLES = {"cpu": ("res20_bench.json", ratios_table),
          "layouts": ("res56_layouts.json", layouts_table)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=ROOT / "result" / "cpu_speed", type=Path,
                   help="folder holding the summaries")
    p.add_argument("--docs", default=ROOT / "docs", type=Path, help="folder holding speed.md")
    p.add_argument("--update", action="store_true",
                   help="write each table into docs/speed.md's marked block instead of printing")
    args = p.parse_args(argv)
    tables = {}
    for name, (file, make) in TABLES.items():  # every summary read before anything is written
        path = args.results / file
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing: run CIFAR/bench.py --summary {path}")
        tables[name] = make(json.loads(path.read_text()))
    for name, text in tables.items():
        if args.update:
            update_block(args.docs / "speed.md", text, *markers(name))
            print(f"updated the {name} table of {args.docs / 'speed.md'}")
        else:
            print(f"{text}\n")


if __name__ == "__main__":
    main()
