"""The integer-export and ONNX tables of docs/export.md and docs/onnx.md, read from the JSON
summaries (export.py --summary) that `tools/export_checks.sh integer` and `onnx` write beside
their logs (result/int_<arch>/<name>.json, result/onnx_<arch>/<name>{,_integer}.json).

    python tools/export_tables.py [--logs result] [--docs docs]
    python tools/export_tables.py --update    # rewrites only the docs' marked blocks

One table per architecture whose checks have run (ResNet-20's always; ResNet-56's once its
result/int_res56/ or onnx_res56/ exists, into its own marked blocks), one row per model those
checks ran (`export_checks.sh models`: the authors' 4/3/2-bit checkpoints where released, then
each of our finished stages): the file's size beside the float checkpoint's,
top-1 of the integer model (our .apot path, or ONNX Runtime: the exact graph and the ConvInteger
one) and of the float fake-quant model in float32 and in float64, and how many predictions
agree with each. A third table, the ONNX speed table of docs/onnx.md, comes from
tools/bench_onnx.py's summaries (result/onnx_res20/bench_<b>bit.json).
"""
import argparse
import json
import re
from pathlib import Path
from typing import Callable, NamedTuple

from tools.docblock import markers as block_markers, update_block

ROOT = Path(__file__).resolve().parents[1]
WHO = {"authors": "authors'", "ours": "our"}
ARCHS = ("res20", "res56")


def block_name(name, arch=""):
    """What a table's marker lines call it: the integer and onnx tables name their arch."""
    return f"{name}-table {arch}".strip()


def markers(name, arch=""):
    return block_markers(block_name(name, arch), "tools/export_tables.py --update")


def model_summaries(folder, suffix):
    """(label, summary path) of every model in folder, the authors' first, 4 bits first."""
    found = []
    for path in folder.glob(f"*{suffix}"):
        m = re.fullmatch(rf"(authors|ours)_(\d)bit{re.escape(suffix)}", path.name)
        if m:
            found.append(((m.group(1) != "authors", -int(m.group(2))),
                          f"{WHO[m.group(1)]} {m.group(2)}-bit", path))
    return [(label, path) for _, label, path in sorted(found)]


def read_summary(path, *commands):
    """The entries of these commands in a --summary file."""
    summary = json.loads(path.read_text())
    missing = [c for c in commands if c not in summary]
    if missing:
        raise SystemExit(f"error: {path} has no {' or '.join(missing)} entry: rerun "
                         "tools/export_checks.sh for this model")
    return [summary[c] for c in commands]


def top1(counts):
    return f"{100 * counts['correct'] / counts['images']:.2f}"


def agreement(counts, reference):
    agree = counts[reference]["agree"]
    return f"{agree:,} ({100 * agree / counts['images']:.2f}%)"


def agreement_cells(counts):
    """Top-1 of the fake-quant model in float32 and in float64, then how many predictions agree
    with each."""
    return ([top1(dict(counts[ref], images=counts["images"])) for ref in ("float", "float64")]
            + [agreement(counts, ref) for ref in ("float", "float64")])


def integer_row(label, path):
    export, infer = read_summary(path, "export", "infer")
    size = (f"{export['bytes']:,} B ({export['checkpoint_bytes']:,} B: "
            f"{export['checkpoint_bytes'] / export['bytes']:.1f}x)")
    return [label, size, top1(infer), *agreement_cells(infer)]


def onnx_row(label, path):
    """The exact graph's summary and, beside it, the ConvInteger graph's (<name>_integer.json)."""
    (exact, exact_run), (integer, integer_run) = (
        read_summary(p, "onnx", "ort") for p in (path, path.with_name(f"{path.stem}_integer.json")))
    size = f"{exact['bytes']:,} B / {integer['bytes']:,} B ({exact['checkpoint_bytes']:,} B)"
    return [label, size, top1(exact_run), top1(integer_run), *agreement_cells(exact_run),
            agreement(integer_run, "float64")]


class Table(NamedTuple):
    folder: str  # under --logs, followed by _<arch>
    suffix: str  # how the one summary per model ends
    row: Callable  # (label, summary path) -> the row's cells
    header: str
    doc: str  # under --docs


# the columns agreement_cells fills
REFERENCES = ("fake-quant top-1, float32 | fake-quant top-1, float64 | predictions agree with "
              "float32 | predictions agree with float64 |")
TABLES = {
    "integer": Table("int", ".json", integer_row, "| checkpoint | file size (float "
                     "checkpoint) | integer path top-1 | " + REFERENCES, "export.md"),
    "onnx": Table("onnx", ".json", onnx_row, "| checkpoint | ONNX file, exact / ConvInteger "
                  "(float checkpoint) | ONNX Runtime top-1, exact | ONNX Runtime top-1, "
                  "ConvInteger | " + REFERENCES.replace("predictions agree", "exact agrees")
                  + " ConvInteger agrees with float64 |", "onnx.md"),
}


# the columns of the speed table: bench_onnx.py's model names, in the table's order
SPEED_COLUMNS = {"APoT ONNX, exact": "exact (default)",
                 "APoT ONNX, ConvInteger int8": "ConvInteger, int8 weights",
                 "APoT ONNX, ConvInteger uint8": "ConvInteger, uint8 weights",
                 "FP32 ONNX": "FP32 ONNX", "PyTorch fake-quant": "PyTorch fake-quant",
                 "bound: exact, no lookup": "bound: exact without its lookup"}


def speed_table(logs):
    """Images per second and the ratio to the FP32 ONNX model, per bit-width (4, 3, 2) and batch,
    from bench_onnx.py's summaries (onnx_res20/bench_<b>bit.json); the exact graph at the
    largest batch in bold."""
    folder = Path(logs) / "onnx_res20"
    benches = sorted((json.loads(p.read_text()) for p in folder.glob("bench_*bit.json")),
                     key=lambda b: -b["bit"])
    if not benches:
        raise SystemExit(f"error: no bench_<b>bit.json in {folder}: run tools/bench_onnx.py "
                         "--summary first")
    lines = ["| bits | batch | " + " | ".join(SPEED_COLUMNS.values()) + " |",
             "|---" * (len(SPEED_COLUMNS) + 2) + "|"]
    for bench in benches:
        batches = sorted(bench["images_per_second"], key=int)
        for batch in batches:
            rates = bench["images_per_second"][batch]
            cells = []
            for name in SPEED_COLUMNS:
                rate, fp32 = rates[name], rates["FP32 ONNX"]
                ratio = "1x" if name == "FP32 ONNX" else f"{rate / fp32:.2f}x"
                cell = f"{rate:,.0f} ({ratio})"
                bold = name == "APoT ONNX, exact" and batch == batches[-1]
                cells.append(f"**{cell}**" if bold else cell)
            lines.append(f"| {bench['bit']} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_folder(name, arch, logs):
    return Path(logs) / f"{TABLES[name].folder}_{arch}"


def checked_archs(name, logs):
    """ResNet-20 (whose authors' checkpoints are always checked), then every other architecture
    that has this table's summary folder."""
    return [a for a in ARCHS if a == "res20" or summary_folder(name, a, logs).is_dir()]


def table(name, arch, logs):
    t, folder = TABLES[name], summary_folder(name, arch, logs)
    rows = [t.row(label, path) for label, path in model_summaries(folder, t.suffix)]
    if not rows:
        raise SystemExit(f"error: no model summaries in {folder}: run "
                         f"tools/export_checks.sh {name} --arch {arch} first")
    rule = "|---" * (t.header.count("|") - 1) + "|"
    lines = [t.header, rule] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", default=ROOT / "result", type=Path,
                   help="folder holding int_<arch>/ and onnx_<arch>/")
    p.add_argument("--docs", default=ROOT / "docs", type=Path,
                   help="folder holding export.md and onnx.md")
    p.add_argument("--update", action="store_true",
                   help="write each table into its doc's marked block instead of printing it")
    args = p.parse_args(argv)
    # every table is read before any doc is written: (doc, marker name, arch) -> text
    tables = {(t.doc, name, arch): table(name, arch, args.logs)
              for name, t in TABLES.items() for arch in checked_archs(name, args.logs)}
    tables["onnx.md", "onnx-speed", ""] = speed_table(args.logs)
    for (doc, name, arch), text in tables.items():
        if args.update:
            update_block(args.docs / doc, text, *markers(name, arch))
            print(f"updated the {block_name(name, arch)} block of {args.docs / doc}")
        else:
            print(f"{text}\n")


if __name__ == "__main__":
    main()
