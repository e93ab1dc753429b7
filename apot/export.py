"""The export command line of both variants: integer export, shift-and-add inference, ONNX.

`CIFAR/export.py` and `ImageNet/export.py` are the command lines; each passes a `Variant` (its
models, its quantized conv class and its test data) to `main`:

    python CIFAR/export.py export CKPT --bit 4 [-a res20] [--out model.apot]
    python CIFAR/export.py infer model.apot --data DIR [--compare CKPT [--float64]] [--limit N]
    python CIFAR/export.py onnx CKPT --bit 4 [-a res20] [--out model.onnx] [--convs C]
    python CIFAR/export.py ort model.onnx --data DIR [--compare CKPT [--float64]] [--limit N]

`export` reads a quantized checkpoint (ours, or the authors' with --bit) and writes the integer
model's file (apot/intmodel.py), printing both file sizes and the operation counts for one
image (apot/opcount.py). `infer` runs that file alone with integer shifts and adds. `onnx`
writes apot/onnx_export.py's graph and `ort` runs it with ONNX Runtime (docs/onnx.md). With
--compare, `infer` and `ort` also run the float fake-quant model of the checkpoint and report
how often the predictions agree; with --float64 also its float64 twin, a reference that float32
rounding does not move (apot/compare.py). Each command's --summary JSON holds what it prints,
in numbers a program reads (the docs' export tables are made from these files).
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from apot.checkpoint import (atomic_save, atomic_write, load_checkpoint, load_weights,
                             strip_module_prefix, write_json)
from apot.cli import ArgumentParser, cli_main
from apot.compare import compare
from apot.errors import UserError
from apot.intmodel import build_int_model, export_model, load_export, modules_of_type
from apot.levels import QUANTS, SUPPORTED_BITS
from apot.onnx_export import CONVS, ort_session, to_onnx
from apot.opcount import cost_report, print_cost
from apot.projection import compilation


@dataclass
class Variant:
    """What the CIFAR and ImageNet command lines differ in."""
    name: str             # the folder, for messages
    archs: dict           # arch -> builder(bit, num_classes, quant) of the float fake-quant model
    default_arch: str
    conv_type: type       # the quantized conv, with a weight_clipping() method
    default_classes: int  # when a checkpoint has no fc.weight to tell
    image_size: int       # the side of the images (the operation counts are for one)
    eval_batches: Callable  # (args, num_classes) -> (n, iterable of (images, target))
    resizable: bool = False  # the models take other sizes: --image-size is offered


def load_quantized_model(path, variant, arch, bit, quant):
    ckpt = load_checkpoint(path)
    if bit is not None and ckpt.get("bit", bit) != bit:
        raise UserError(f"{path} is a {ckpt['bit']}-bit checkpoint, not --bit {bit}")
    arch, bit = ckpt.get("arch", arch), ckpt.get("bit", bit)
    quant = ckpt.get("quant", quant)
    if arch not in variant.archs:
        raise UserError(f"{path} holds a {arch} model, not one of {variant.name}'s "
                        f"({', '.join(sorted(variant.archs))})")
    if bit is None:
        raise UserError(f"{path} does not record its bit-width: pass --bit")
    if bit == 32:
        raise UserError(f"{path} is a 32-bit checkpoint: only quantized models export to codes")
    state_dict = strip_module_prefix(ckpt["state_dict"])
    num_classes = (state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict
                   else variant.default_classes)
    model = variant.archs[arch](bit=bit, num_classes=num_classes, quant=quant)
    load_weights(model, state_dict, path)  # strict: a missing alpha is another bit-width
    return model.eval(), dict(arch=arch, bit=bit, quant=quant, num_classes=num_classes)


def default_out(checkpoint, suffix=".apot"):
    """model_best.pth.tar -> model_best.apot (or another suffix), beside it."""
    base = checkpoint
    for ext in (".tar", ".pth", ".pt"):
        base = base.removesuffix(ext)
    return base + suffix


def file_sizes(out, checkpoint):
    return dict(file=out, bytes=os.path.getsize(out), checkpoint=checkpoint,
                checkpoint_bytes=os.path.getsize(checkpoint))


def write_summary(path, command, values):
    """One command's numbers into the JSON summary at path, beside what the other commands
    wrote there for the same model (export and infer; onnx and ort): the file the docs' tables
    are made from."""
    summary = {}
    if os.path.exists(path):
        try:
            summary = json.loads(Path(path).read_text())
        except ValueError as e:
            raise UserError(f"--summary {path} exists and is not a JSON summary ({e})") from e
    summary[command] = values
    write_json(path, summary, sort_keys=True)


def run_command(args, variant):
    commands = {"export": cmd_export, "infer": cmd_infer, "onnx": cmd_onnx, "ort": cmd_ort}
    values = commands[args.command](args, variant)
    if args.summary:
        write_summary(args.summary, args.command, values)


def cmd_export(args, variant):
    model, meta = load_quantized_model(args.checkpoint, variant, args.arch, args.bit, args.quant)
    blob = export_model(model, meta, variant.conv_type)
    out = args.out or default_out(args.checkpoint)
    atomic_save(blob, out)
    print(f"wrote {out}: {os.path.getsize(out):,d} bytes "
          f"(float checkpoint {args.checkpoint}: {os.path.getsize(args.checkpoint):,d} bytes, "
          f"{os.path.getsize(args.checkpoint) / os.path.getsize(out):.1f}x larger)")
    weights = sum(v["codes"].numel() for v in blob["layers"].values())
    print(f"{len(blob['layers'])} quantized convs, {weights:,d} bytes of {meta['bit']}-bit codes")
    rows = cost_report(build_int_model(load_export(out, variant), variant), args.image_size)
    print_cost(rows, args.image_size)
    return dict(file_sizes(out, args.checkpoint), quantized_convs=len(blob["layers"]),
                code_bytes=weights)


@torch.no_grad()
def cmd_infer(args, variant):
    blob = load_export(args.file, variant)
    int_model = build_int_model(blob, variant)
    float_model = None
    if args.compare:
        float_model, _ = load_quantized_model(args.compare, variant, blob["arch"], blob["bit"],
                                              blob["quant"])
    return compare(lambda images: int_model(images), float_model, "integer path", args, variant,
                   blob["num_classes"])


def cmd_onnx(args, variant):
    if args.uint8_weights and args.convs != "integer":
        raise UserError("--uint8-weights is a form of the ConvInteger graph: add --convs integer")
    model, meta = load_quantized_model(args.checkpoint, variant, args.arch, args.bit, args.quant)
    proto = to_onnx(model, variant.conv_type, args.image_size, convs=args.convs,
                    unsigned_weights=args.uint8_weights)
    out = args.out or default_out(args.checkpoint,
                                  ".fp32.onnx" if args.convs == "fp32" else ".onnx")
    atomic_write(out, lambda f: f.write(proto.SerializeToString()))
    n_quant = len(modules_of_type(model, variant.conv_type))
    n_int = sum(n.op_type == "ConvInteger" for n in proto.graph.node)
    kind = {"fp32": "plain FP32 convs",
            "integer": f"{meta['bit']}-bit ConvInteger",
            "exact": f"{meta['bit']}-bit exact float convs on integers"
                     + (f" ({n_int} of {n_quant} ConvInteger: accumulator over 2^24)"
                        if n_int else "")}[args.convs]
    print(f"wrote {out}: {os.path.getsize(out):,d} bytes, {meta['arch']} with {kind} "
          f"(float checkpoint {args.checkpoint}: {os.path.getsize(args.checkpoint):,d} bytes)")
    return dict(file_sizes(out, args.checkpoint), convs=args.convs, quantized_convs=n_quant,
                conv_integer_layers=n_int)


def cmd_ort(args, variant):
    session = ort_session(args.file)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    num_classes = out.shape[-1]
    float_model = None
    if args.compare:
        float_model, meta = load_quantized_model(args.compare, variant, variant.default_arch,
                                                 args.bit, "apot")
        if meta["num_classes"] != num_classes:
            raise UserError(f"{args.compare} has {meta['num_classes']} classes, {args.file} "
                            f"{num_classes}")
    return compare(
        lambda images: torch.from_numpy(session.run(None, {inp.name: images.numpy()})[0]),
        float_model, "ONNX Runtime", args, variant, num_classes)


def add_checkpoint_args(p, variant):
    p.add_argument("checkpoint")
    p.add_argument("-a", "--arch", default=variant.default_arch, choices=sorted(variant.archs))
    p.add_argument("--bit", type=int, choices=SUPPORTED_BITS, default=None,
                   help="bit-width (needed for checkpoints that do not record it)")
    p.add_argument("--quant", default="apot", choices=QUANTS,
                   help="level family of the quantized convs")


def add_test_set_args(p):
    p.add_argument("file")
    p.add_argument("--data", default="./data")
    p.add_argument("--compare", default="", metavar="CKPT", help="also run this float model")
    p.add_argument("--float64", action="store_true",
                   help="run the --compare model in float64 too (with the weights float32 "
                        "quantizes): the reference that float32 rounding does not move")
    p.add_argument("--limit", type=int, default=0, help="only the first N test images")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--no-progress", action="store_true")


def get_args_parser(variant):
    p = ArgumentParser(description=f"APoT integer export and shift-add inference ({variant.name})")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="checkpoint -> integer codes file")
    add_checkpoint_args(e, variant)
    e.add_argument("--out", default="")
    i = sub.add_parser("infer", help=f"integer inference on the {variant.name} test images")
    add_test_set_args(i)
    o = sub.add_parser("onnx", help="checkpoint -> ONNX file computing exact integer convolutions")
    add_checkpoint_args(o, variant)
    o.add_argument("--out", default="", help="default: beside the checkpoint, .onnx")
    o.add_argument("--convs", default="exact", choices=CONVS,
                   help="the quantized convs as: float Convs on integer values (exact, the "
                        "fastest on CPUs); ConvInteger on uint8 x int8 (for integer runtimes and "
                        "accelerators); plain FP32 Convs of the latent weights (not the model: "
                        "the float twin, for speed comparisons)")
    o.add_argument("--uint8-weights", action="store_true",
                   help="with --convs integer: the int8 weight integers as uint8 w + 128 with a "
                        "weight zero point of 128, the same convolution, faster under ONNX "
                        "Runtime on x86")
    r = sub.add_parser("ort", help=f"run an ONNX file with ONNX Runtime on the {variant.name} "
                                   "test images")
    add_test_set_args(r)
    r.add_argument("--bit", type=int, choices=SUPPORTED_BITS, default=None,
                   help="--compare checkpoint's bit-width, if it does not record it")
    for sub_parser in (e, i, o, r):
        sub_parser.add_argument("--summary", default="", metavar="JSON",
                                help="also write the numbers printed into this JSON file, under "
                                     "the command's name (other commands' entries are kept)")
        if variant.resizable:
            sub_parser.add_argument("--image-size", type=int, default=variant.image_size,
                                    help="image side: of the test crops, and of the image the "
                                    "operation counts are for")
        else:
            sub_parser.set_defaults(image_size=variant.image_size)
    return p


def main(variant, argv=None):
    with compilation(False):  # a few batches: compilation would not pay off
        cli_main(get_args_parser(variant), lambda args: run_command(args, variant), argv)
