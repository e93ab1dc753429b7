"""The integer-export and ONNX tables of docs/export.md and docs/onnx.md, read from the logs
that `tools/export_checks.sh integer` and `onnx` write (result/int_res20/, result/onnx_res20/).

    python tools/export_tables.py [--logs result] [--docs docs]
    python tools/export_tables.py --update    # rewrites only the two docs' marked blocks

One row per model those checks ran (`export_checks.sh models`: the authors' 4/3/2-bit
checkpoints, then each of our finished stages): the file's size beside the float checkpoint's,
top-1 of the integer model (our .apot path, or ONNX Runtime: the exact graph and the ConvInteger
one) and of the float fake-quant model in float32 and in float64, and how many predictions
agree with each.
"""
import argparse
import re
from pathlib import Path
from typing import Callable, NamedTuple

from tools.docblock import update_block

ROOT = Path(__file__).resolve().parents[1]
WHO = {"authors": "authors'", "ours": "our"}
FLOAT = (r"^{} fake-quant model: top-1 (\d+\.\d\d); predictions agree on (\d+) of \d+ "
         r"\((\d+\.\d\d)%\)")


def markers(name):
    return (f"<!-- {name}-table: made by tools/export_tables.py --update -->",
            f"<!-- /{name}-table -->")


def search(pattern, text, path):
    match = re.search(pattern, text, re.M)
    if match is None:
        raise SystemExit(f"error: {path} has no line matching {pattern!r}: rerun the script "
                         "that wrote it")
    return match


def model_logs(folder, suffix):
    """(label, log path) of every model logged in folder, the authors' first, 4 bits first."""
    found = []
    for path in folder.glob(f"*{suffix}"):
        m = re.fullmatch(rf"(authors|ours)_(\d)bit{re.escape(suffix)}", path.name)
        if m:
            found.append(((m.group(1) != "authors", -int(m.group(2))),
                          f"{WHO[m.group(1)]} {m.group(2)}-bit", path))
    return [(label, path) for _, label, path in sorted(found)]


def agreement_cells(text, path):
    """Top-1 of the fake-quant model in float32 and in float64, then how many predictions agree
    with each."""
    runs = [search(FLOAT.format(label), text, path).groups() for label in ("float", "float64")]
    return ([top1 for top1, _, _ in runs]
            + [f"{int(agree):,} ({share}%)" for _, agree, share in runs])


def integer_row(label, infer_log):
    export_log = infer_log.with_name(infer_log.name.replace("_infer.txt", "_export.txt"))
    size = search(r"^wrote .*: ([\d,]+) bytes \(float checkpoint .*: ([\d,]+) bytes, "
                  r"(\d+\.\d)x larger\)$", export_log.read_text(), export_log)
    text = infer_log.read_text()
    top1 = search(r"^integer path: top-1 (\d+\.\d\d) on", text, infer_log).group(1)
    return [label, f"{size[1]} B ({size[2]} B: {size[3]}x)", top1,
            *agreement_cells(text, infer_log)]


def onnx_row(label, log):
    """The exact graph's log and, beside it, the ConvInteger graph's (<name>_integer.txt)."""
    logs = (log, log.with_name(f"{log.stem}_integer.txt"))
    texts = [path.read_text() for path in logs]
    sizes = [search(r"^wrote .*: ([\d,]+) bytes, .*\(float checkpoint .*: ([\d,]+) bytes\)$",
                    text, path) for text, path in zip(texts, logs)]
    top1s = [search(r"^ONNX Runtime: top-1 (\d+\.\d\d) on", text, path).group(1)
             for text, path in zip(texts, logs)]
    cells = agreement_cells(texts[0], log)
    integer_agree = agreement_cells(texts[1], logs[1])[3]
    return [label, f"{sizes[0][1]} B / {sizes[1][1]} B ({sizes[0][2]} B)", *top1s, *cells,
            integer_agree]


class Table(NamedTuple):
    folder: str  # under --logs
    suffix: str  # how the one log per model ends
    row: Callable  # (label, log path) -> the row's cells
    header: str
    doc: str  # under --docs


# the columns agreement_cells fills
REFERENCES = ("fake-quant top-1, float32 | fake-quant top-1, float64 | predictions agree with "
              "float32 | predictions agree with float64 |")
TABLES = {
    "integer": Table("int_res20", "_infer.txt", integer_row, "| checkpoint | file size (float "
                     "checkpoint) | integer path top-1 | " + REFERENCES, "export.md"),
    "onnx": Table("onnx_res20", ".txt", onnx_row, "| checkpoint | ONNX file, exact / ConvInteger "
                  "(float checkpoint) | ONNX Runtime top-1, exact | ONNX Runtime top-1, "
                  "ConvInteger | " + REFERENCES.replace("predictions agree", "exact agrees")
                  + " ConvInteger agrees with float64 |", "onnx.md"),
}


def table(name, logs):
    t = TABLES[name]
    rows = [t.row(label, path) for label, path in model_logs(Path(logs) / t.folder, t.suffix)]
    if not rows:
        raise SystemExit(f"error: no model logs in {Path(logs) / t.folder}: run its run.sh first")
    rule = "|---" * (t.header.count("|") - 1) + "|"
    lines = [t.header, rule] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logs", default=ROOT / "result", type=Path,
                   help="folder holding int_res20/ and onnx_res20/")
    p.add_argument("--docs", default=ROOT / "docs", type=Path,
                   help="folder holding export.md and onnx.md")
    p.add_argument("--update", action="store_true",
                   help="write each table into its doc's marked block instead of printing it")
    args = p.parse_args(argv)
    tables = {name: table(name, args.logs) for name in TABLES}  # every log read before writing
    for name, text in tables.items():
        if args.update:
            doc = args.docs / TABLES[name].doc
            update_block(doc, text, *markers(name))
            print(f"updated the {name} table of {doc}")
        else:
            print(f"{text}\n")


if __name__ == "__main__":
    main()
