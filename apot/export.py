"""Integer export of APoT-quantized ResNets and their shift-and-add inference, for both variants.

`CIFAR/export.py` and `ImageNet/export.py` are the command lines; each passes a `Variant` (its
models, its quantized conv class and its test data) to `main`:

    python CIFAR/export.py export CKPT --bit 4 [-a res20] [--out model.apot]
    python CIFAR/export.py infer model.apot --data DIR [--compare CKPT [--float64]] [--limit N]
    python CIFAR/export.py onnx CKPT --bit 4 [-a res20] [--out model.onnx] [--convs C]
    python CIFAR/export.py ort model.onnx --data DIR [--compare CKPT [--float64]] [--limit N]

(`onnx` and `ort` are apot/onnx_export.py's graph, written and run by ONNX Runtime:
docs/onnx.md.)

`export` reads a quantized checkpoint (ours, or the authors' with --bit), writes one file with,
per quantized conv, the b-bit weight codes (sign bit and level index, bit-packed), the layer's
rescale (weight alpha over the weight levels' integer denominator, times the activation alpha
over the activation levels' denominator; the weight normalisation needs nothing more, as the
fake-quant model does not multiply the std back) and the activation alpha and level integers;
and for the rest what inference needs: 9-bit-or-more signed codes and a scale for the 8-bit
first conv and last fc, BatchNorm, the fc bias. It prints both file sizes and the operation
counts for one image.

`infer` reads only that file: every quantized conv turns its input into activation codes, takes
their level integers, and accumulates sum_e (weight-bit-e mask @ activations) << e in int64,
i.e. additions, subtractions and shifts, then rescales once. BatchNorm, ReLU, pooling, the
residual adds and the 8-bit first/last layers stay in float. With --compare it also runs the
float fake-quant model of the checkpoint and reports how often the predictions agree; with
--float64 also its float64_twin, a reference that float32 rounding does not move.
"""
import copy
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from apot.checkpoint import (atomic_save, atomic_write, load_checkpoint, load_weights,
                             strip_module_prefix)
from apot.cli import ArgumentParser, cli_main
from apot.eightbit import codes_8bit, first_conv, last_fc
from apot.errors import UserError
from apot.intmath import (int_conv2d, integer_terms, pack_codes, split_weight_codes,
                          unpack_codes, weight_codes)
from apot.levels import QUANTS, SUPPORTED_BITS
from apot.onnx_export import CONVS, ort_session, to_onnx
from apot.projection import compilation, project_index

FORMAT = "apot-int-v1"


@dataclass
class Variant:
    """What the CIFAR and ImageNet command lines differ in."""
    name: str             # the folder, for messages
    archs: dict           # arch -> builder(bit, num_classes, quant) of the float fake-quant model
    default_arch: str
    conv_type: type       # the quantized conv, with an export_terms() method
    default_classes: int  # when a checkpoint has no fc.weight to tell
    image_size: int       # the side of the images (the operation counts are for one)
    eval_batches: Callable  # (args, num_classes) -> (n, iterable of (images, target))
    resizable: bool = False  # the models take other sizes: --image-size is offered


# --- export -------------------------------------------------------------------------------------

def export_conv(conv):
    """One quantized conv's codes and constants."""
    t = integer_terms(conv)
    index, bit = t["index"], t["bit"]
    codes = weight_codes(t["negative"], index, bit) * (index > 0)  # zero carries no sign
    return {"shape": list(t["x"].shape), "stride": conv.stride[0], "padding": conv.padding[0],
            "bit": bit, "codes": pack_codes(codes.numpy(), bit),
            "w_level_ints": t["w_ints"], "a_level_ints": t["a_ints"], "a_alpha": t["a_alpha"],
            "a_mids": t["a_mids"].clone(), "scale": t["scale"]}


EIGHTBIT = (first_conv, last_fc)  # the layers every model keeps at 8 bits


def modules_of_type(model, types):
    """{name: module} of the model's modules that are instances of types, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, types)}


def export_model(model, meta, conv_type):
    quant = modules_of_type(model, conv_type)
    if not quant:
        raise UserError("the checkpoint has no quantized convs (a 32-bit model): nothing to export")
    eightbit = modules_of_type(model, EIGHTBIT)
    prefixes, codes_instead = tuple(f"{n}." for n in quant), {f"{n}.weight" for n in eightbit}
    rest = {k: v for k, v in model.state_dict().items()
            if not k.startswith(prefixes) and k not in codes_instead}
    out = {"format": FORMAT, **meta, "layers": {n: export_conv(m) for n, m in quant.items()},
           "float": rest}
    for name, layer in eightbit.items():
        # int16: the signed-max scale puts codes below -127
        codes, m = codes_8bit(layer.weight)
        out[name] = {"codes": codes.to(torch.int16), "scale": (m / 127).item()}
    return out


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


# --- integer inference --------------------------------------------------------------------------

class IntConv(nn.Module):
    """A quantized conv computed from the exported codes with integer shifts and adds."""

    def __init__(self, layer):
        super().__init__()
        o, c, k, _ = layer["shape"]
        codes = unpack_codes(layer["codes"], layer["bit"], o * c * k * k).view(o, c, k, k)
        sign, index = split_weight_codes(codes, layer["bit"])
        self.w_sign, self.w_int = sign, layer["w_level_ints"][index]
        self.a_ints, self.a_mids = layer["a_level_ints"], layer["a_mids"]
        self.a_alpha, self.scale = layer["a_alpha"], layer["scale"]
        self.stride, self.padding = layer["stride"], layer["padding"]
        self.ops = None

    def activation_codes(self, x):
        return project_index((x / self.a_alpha).clamp(max=1), self.a_mids)

    def forward(self, x):
        a_int = self.a_ints[self.activation_codes(x)]
        acc, self.ops = int_conv2d(a_int, self.w_sign, self.w_int, self.stride, self.padding)
        return acc.to(torch.float32) * self.scale


def load_export(path, variant):
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path} is not an exported APoT model ({FORMAT})")
    if blob["arch"] not in variant.archs:
        raise UserError(f"{path} holds a {blob['arch']} model, not one of {variant.name}'s")
    return blob


def plain_copy(layer):
    """A float nn.Conv2d / nn.Linear of the same geometry as an 8-bit layer."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, bias=layer.bias is not None)
    return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)


def set_submodule(model, name, module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def build_int_model(blob, variant):
    """The network of the exported file: the float skeleton with its quantized convs replaced."""
    model = variant.archs[blob["arch"]](bit=blob["bit"], num_classes=blob["num_classes"],
                                        quant=blob["quant"])
    for name, layer in blob["layers"].items():
        set_submodule(model, name, IntConv(layer))
    eightbit = {name: plain_copy(layer) for name, layer in modules_of_type(model, EIGHTBIT).items()}
    for name, layer in eightbit.items():
        set_submodule(model, name, layer)
    model.load_state_dict(blob["float"], strict=False)
    with torch.no_grad():
        for name, layer in eightbit.items():
            layer.weight.copy_(blob[name]["codes"].float() * blob[name]["scale"])
    return model.eval()


# --- cost report --------------------------------------------------------------------------------

def cost_report(int_model, image_size):
    """Per layer, for one image: float multiplications vs the integer path's shifts/adds."""
    rows = []
    hooks = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(module, IntConv):
                o, c, k = module.w_int.shape[0], module.w_int.shape[1], module.w_int.shape[2]
                mults = output.shape[2] * output.shape[3] * o * c * k * k
                rows.append((name, mults, module.ops["shifts"], module.ops["adds"], 0))
            else:
                w = module.weight
                per_out = w[0].numel()
                positions = output[0].numel() // w.shape[0]
                n = positions * w.shape[0] * per_out
                rows.append((name + " (8-bit)", n, 0, 0, n))
        return hook

    for name, m in int_model.named_modules():
        if isinstance(m, (IntConv, nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(record(name)))
    with torch.no_grad():
        int_model(torch.zeros(1, 3, image_size, image_size))
    for h in hooks:
        h.remove()
    return rows


def print_cost(rows, image_size):
    print(f"operations for one {image_size}x{image_size} image:")
    print(f"{'layer':28s} {'float mults':>12s} {'APoT shifts':>12s} {'APoT adds':>12s} "
          f"{'8-bit mults':>12s}")
    for name, mults, shifts, adds, m8 in rows:
        print(f"{name:28s} {mults:12,d} {shifts:12,d} {adds:12,d} {m8:12,d}")
    tot = [sum(r[i] for r in rows) for i in range(1, 5)]
    print(f"{'total':28s} {tot[0]:12,d} {tot[1]:12,d} {tot[2]:12,d} {tot[3]:12,d}")
    q = sum(r[1] for r in rows if r[4] == 0)
    print(f"quantized convs: {q:,d} float multiplications become {tot[1]:,d} shifts and "
          f"{tot[2]:,d} additions; the 8-bit first/last layers keep {tot[3]:,d} multiplications")


# --- commands -----------------------------------------------------------------------------------

def default_out(checkpoint, suffix=".apot"):
    """model_best.pth.tar -> model_best.apot (or another suffix), beside it."""
    base = checkpoint
    for ext in (".tar", ".pth", ".pt"):
        base = base.removesuffix(ext)
    return base + suffix


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


@torch.no_grad()
def cmd_infer(args, variant):
    blob = load_export(args.file, variant)
    int_model = build_int_model(blob, variant)
    float_model = None
    if args.compare:
        float_model, _ = load_quantized_model(args.compare, variant, blob["arch"], blob["bit"],
                                              blob["quant"])
    compare(lambda images: int_model(images), float_model, "integer path", args, variant,
            blob["num_classes"])


@torch.no_grad()
def float64_twin(model):
    """The fake-quant model in float64, holding the quantized weights its float32 quantizers
    give. Float32 rounding in the fake-quant convolutions moves a few activations across a
    level midpoint, differently on each machine (it depends on the summation order); in float64
    those flips all but vanish, so the twin is the reference no machine moves. The weights stay
    as float32 chose them: a latent weight exactly on a midpoint in float32 (our 2-bit ResNet-20
    has one) takes the other level in float64, which would be another model, not the same one
    computed more exactly."""
    twin = copy.deepcopy(model)
    weights = {name: m.quantized_weight() for name, m in twin.named_modules()
               if hasattr(m, "quantized_weight")}
    twin.double()
    for name, w in weights.items():
        twin.get_submodule(name).quantized_weight = lambda w=w.double(): w
    return twin


@torch.no_grad()
def compare(predict, float_model, name, args, variant, num_classes):
    """Top-1 of predict (images -> logits) on the test images, and with a float model, its
    top-1 and how many predictions agree; with args.float64, the same for its float64_twin."""
    if args.float64 and float_model is None:
        raise UserError("--float64 runs the --compare model in float64: give --compare CKPT")
    refs = {}  # line label -> (fake-quant model, dtype)
    if float_model is not None:
        refs["float"] = (float_model, torch.float32)
        if args.float64:
            refs["float64"] = (float64_twin(float_model), torch.float64)
    n, batches = variant.eval_batches(args, num_classes)
    ok = float_agree = 0
    ref_ok, agree = dict.fromkeys(refs, 0), dict.fromkeys(refs, 0)
    for images, target in tqdm(batches, total=math.ceil(n / args.batch),
                               disable=args.no_progress):
        pred = predict(images).argmax(1)
        ok += (pred == target).sum().item()
        ref_preds = {key: model(images.to(dtype)).argmax(1) for key, (model, dtype) in refs.items()}
        for key, ref_pred in ref_preds.items():
            ref_ok[key] += (ref_pred == target).sum().item()
            agree[key] += (ref_pred == pred).sum().item()
        if args.float64:
            float_agree += (ref_preds["float"] == ref_preds["float64"]).sum().item()
    print(f"{name}: top-1 {100 * ok / n:.2f} on {n} test images")
    for key in refs:
        print(f"{key} fake-quant model: top-1 {100 * ref_ok[key] / n:.2f}; predictions agree on "
              f"{agree[key]} of {n} ({100 * agree[key] / n:.2f}%)"
              + (f", with the float model's on {float_agree}" if key == "float64" else ""))


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
    compare(lambda images: torch.from_numpy(session.run(None, {inp.name: images.numpy()})[0]),
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
        if variant.resizable:
            sub_parser.add_argument("--image-size", type=int, default=variant.image_size,
                                    help="image side: of the test crops, and of the image the "
                                    "operation counts are for")
        else:
            sub_parser.set_defaults(image_size=variant.image_size)
    return p


def main(variant, argv=None):
    commands = {"export": cmd_export, "infer": cmd_infer, "onnx": cmd_onnx, "ort": cmd_ort}
    with compilation(False):  # a few batches: compilation would not pay off
        cli_main(get_args_parser(variant), lambda args: commands[args.command](args, variant),
                 argv)
