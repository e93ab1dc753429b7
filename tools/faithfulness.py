"""The authors' released ResNet-20 checkpoints evaluated as `main.py -e` evaluates them, beside
the top-1 each checkpoint stores: the README's faithfulness table.

    python tools/faithfulness.py --summary result/faithfulness/cpu.json [--data D] [--official D]
    python tools/faithfulness.py --update README.md    # the table, from the summaries

The first form runs the four checkpoints (main.py's model, weight loading and evaluate(), the
quantizers compiled as users run them) on the whole CIFAR-10 test set and writes the stored
and measured top-1 as JSON. The table puts beside them the other summaries of
result/faithfulness/ (e.g. a GPU's, made the same way), one column each, in --columns' order.
"""
import argparse
import json
import os
from pathlib import Path

import torch

from apot.checkpoint import load_checkpoint, write_json
from apot.cli import data_root
from apot.devices import RunContext
from apot.runfolder import stage_name
from apot.training import memory_format
from CIFAR.data import Normalize, load_cifar
from CIFAR.main import build_model, evaluate, get_args_parser, load_initial_weights
from tools.docblock import markers, update_block

ROOT = Path(__file__).resolve().parents[1]
BITS = (32, 4, 3, 2)
MARKERS = markers("faithfulness-table", "tools/faithfulness.py --update")


def measure(data, official, device):
    """{bit: (stored top-1, our top-1)} of the authors' checkpoints on the whole test set."""
    _, _, x, y = load_cifar(data, download=False, train=False)
    ctx = RunContext(rank=0, world=1, device=device, dp_ids=None, quiet=True)
    results = {}
    for bit in BITS:
        path = os.path.join(official, f"res20_{bit}bit.pth.tar")
        args = get_args_parser().parse_args(["-a", "res20", "--bit", str(bit), "-e", "--init",
                                             path])
        model = build_model(args).to(device)
        load_initial_weights(model, args, print)
        normalize = Normalize("cifar10", device, memory_format(args))
        _, top1 = evaluate(model, torch.nn.CrossEntropyLoss(), (x.to(device), y.to(device)),
                           normalize, ctx)
        results[str(bit)] = {"stored": load_checkpoint(path)["best_prec"], "top1": top1}
        print(f"{stage_name(bit)}: stored {results[str(bit)]['stored']:.2f}, ours {top1:.2f}",
              flush=True)
    return results


def table(summaries):
    """The markdown table: the stored top-1 (from the first summary), then each summary's."""
    first = summaries[0]["results"]
    lines = ["| checkpoint | stored by the authors | "
             + " | ".join(s["column"] for s in summaries) + " |",
             "|---" * (len(summaries) + 2) + "|"]
    for bit in map(str, BITS):
        lines.append(f"| {stage_name(int(bit))} | {first[bit]['stored']:.2f} | "
                     + " | ".join(f"{s['results'][bit]['top1']:.2f}" for s in summaries) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", default="", metavar="JSON",
                   help="evaluate the checkpoints and write their numbers here")
    p.add_argument("--column", default="ours, `main.py -e` on the CPU",
                   help="the table's heading for this summary's column")
    p.add_argument("--data", default=os.path.join(data_root(), "cifar10"))
    p.add_argument("--official", default=os.path.join(data_root(), "apot-official-res20"))
    p.add_argument("--update", default="", metavar="README",
                   help="write the table of the summaries into this file's marked block")
    p.add_argument("--columns", nargs="+", default=["cpu.json", "h200.json"],
                   help="the summaries of result/faithfulness/ the table shows, in order")
    args = p.parse_args(argv)
    if args.summary:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        summary = {"column": args.column, "torch": torch.__version__, "device": str(device),
                   "results": measure(args.data, args.official, device)}
        write_json(args.summary, summary)
    if args.update:
        folder = ROOT / "result" / "faithfulness"
        text = table([json.loads((folder / name).read_text()) for name in args.columns])
        update_block(args.update, text, *MARKERS)
        print(f"updated the faithfulness table of {args.update}")


if __name__ == "__main__":
    main()
