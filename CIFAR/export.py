"""Export a quantized CIFAR ResNet to integer APoT codes, and run it with shifts and adds.

    python CIFAR/export.py export CKPT --bit 4 [-a res20] [--out model.apot]
    python CIFAR/export.py infer model.apot --data DIR [--compare CKPT] [--limit N]

`export` reads a quantized checkpoint (ours, or the authors' with --bit), writes one file with,
per quantized conv, the b-bit weight codes (sign bit and level index, bit-packed), the layer's
rescale (weight alpha over the weight levels' integer denominator, times the activation alpha
over the activation levels' denominator; the weight normalisation needs nothing more, as the
fake-quant model does not multiply the std back) and the activation alpha and level integers;
and for the rest what inference needs: 9-bit-or-more signed codes and a scale for the 8-bit
first conv and last fc, BatchNorm, the fc bias. It prints both file sizes and the operation
counts for one 32x32 image.

`infer` reads only that file: every quantized conv turns its input into activation codes, takes
their level integers, and accumulates sum_e (weight-bit-e mask @ activations) << e in int64,
i.e. additions, subtractions and shifts, then rescales once. BatchNorm, ReLU, the residual
adds and the 8-bit first/last layers stay in float. With --compare it also runs the float
fake-quant model of the checkpoint and reports how often the predictions agree.
"""
import os

import torch
import torch.nn as nn
from tqdm import tqdm

from apot.eightbit import codes_8bit
from apot.intmath import int_conv2d, pack_codes, split_weight_codes, unpack_codes, weight_codes
from apot.levels import level_integers, weight_level_integers
from apot.projection import project_index
from apot.training import (ArgumentParser, UserError, atomic_save, cli_main, load_checkpoint,
                           load_weights, strip_module_prefix)
from CIFAR.data import Normalize, load_cifar
from CIFAR.quant_layer import QuantConv2d
from CIFAR.resnet import ARCHS

FORMAT = "apot-int-v1"


# --- export -------------------------------------------------------------------------------------

def export_conv(conv):
    """One QuantConv2d's codes and constants, from the same arithmetic as its forward pass."""
    wq = conv.weight_quant
    w = conv.weight.detach()
    x = (wq.normalise(w) / wq.wgt_alpha.detach()).clamp(-1, 1)
    index = project_index(x.abs(), wq.mids)
    codes = weight_codes(x < 0, index, conv.bit) * (index > 0)  # zero carries no sign
    w_ints, w_denom = weight_level_integers(conv.bit, conv.quant)
    a_ints, a_denom = level_integers(conv.bit, conv.quant)
    a_alpha = conv.act_alpha.detach().item()
    return {"shape": list(w.shape), "stride": conv.stride[0], "padding": conv.padding[0],
            "bit": conv.bit, "codes": pack_codes(codes.numpy(), conv.bit),
            "w_level_ints": w_ints, "a_level_ints": a_ints, "a_alpha": a_alpha,
            "a_mids": conv.act_mids.clone(),
            "scale": wq.wgt_alpha.item() / w_denom * a_alpha / a_denom}


def export_model(model, meta):
    quant = {n: m for n, m in model.named_modules() if isinstance(m, QuantConv2d)}
    if not quant:
        raise UserError("the checkpoint has no quantized convs (a 32-bit model): nothing to export")
    prefixes = tuple(f"{n}." for n in quant)
    rest = {k: v for k, v in model.state_dict().items()
            if not k.startswith(prefixes) and k not in ("conv1.weight", "fc.weight")}
    out = {"format": FORMAT, **meta, "layers": {n: export_conv(m) for n, m in quant.items()},
           "float": rest}
    for name in ("conv1", "fc"):
        # int16: the signed-max scale puts codes below -127
        codes, m = codes_8bit(getattr(model, name).weight)
        out[name] = {"codes": codes.to(torch.int16), "scale": (m / 127).item()}
    return out


def load_quantized_model(path, arch, bit, quant):
    ckpt = load_checkpoint(path)
    arch, bit = ckpt.get("arch", arch), ckpt.get("bit", bit)
    quant = ckpt.get("quant", quant)
    if bit is None:
        raise UserError(f"{path} does not record its bit-width: pass --bit")
    if bit == 32:
        raise UserError(f"{path} is a 32-bit checkpoint: only quantized models export to codes")
    state_dict = strip_module_prefix(ckpt["state_dict"])
    num_classes = state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict else 10
    model = ARCHS[arch](bit=bit, num_classes=num_classes, quant=quant)
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


def load_export(path):
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path} is not an exported APoT model ({FORMAT})")
    return blob


def build_int_model(blob):
    """The network of the exported file: the float skeleton with its quantized convs replaced."""
    model = ARCHS[blob["arch"]](bit=blob["bit"], num_classes=blob["num_classes"],
                                quant=blob["quant"])
    for name, layer in blob["layers"].items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, IntConv(layer))
    conv1 = model.conv1
    model.conv1 = nn.Conv2d(3, conv1.out_channels, 3, 1, 1, bias=False)
    model.fc = nn.Linear(model.fc.in_features, model.fc.out_features)
    model.load_state_dict(blob["float"], strict=False)
    with torch.no_grad():
        for name in ("conv1", "fc"):
            layer = getattr(model, name)
            layer.weight.copy_(blob[name]["codes"].float() * blob[name]["scale"])
    return model.eval()


# --- cost report --------------------------------------------------------------------------------

def cost_report(int_model):
    """Per layer, for one 32x32 image: float multiplications vs the integer path's shifts/adds."""
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
        int_model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    return rows


def print_cost(rows):
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

def cmd_export(args):
    model, meta = load_quantized_model(args.checkpoint, args.arch, args.bit, args.quant)
    blob = export_model(model, meta)
    out = args.out or os.path.splitext(args.checkpoint)[0] + ".apot"
    atomic_save(blob, out)
    print(f"wrote {out}: {os.path.getsize(out):,d} bytes "
          f"(float checkpoint {args.checkpoint}: {os.path.getsize(args.checkpoint):,d} bytes, "
          f"{os.path.getsize(args.checkpoint) / os.path.getsize(out):.1f}x larger)")
    weights = sum(v["codes"].numel() for v in blob["layers"].values())
    print(f"{len(blob['layers'])} quantized convs, {weights:,d} bytes of {meta['bit']}-bit codes")
    print_cost(cost_report(build_int_model(load_export(out))))


@torch.no_grad()
def cmd_infer(args):
    blob = load_export(args.file)
    int_model = build_int_model(blob)
    float_model = None
    if args.compare:
        float_model, _ = load_quantized_model(args.compare, blob["arch"], blob["bit"],
                                              blob["quant"])
    _, _, x, y = load_cifar(args.data, "cifar10" if blob["num_classes"] == 10 else "cifar100",
                            download=False, train=False)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    normalize = Normalize("cifar10" if blob["num_classes"] == 10 else "cifar100", "cpu")
    int_ok = float_ok = agree = 0
    for s in tqdm(range(0, len(x), args.batch), disable=args.no_progress):
        images, target = normalize(x[s:s + args.batch]).contiguous(), y[s:s + args.batch]
        pred = int_model(images).argmax(1)
        int_ok += (pred == target).sum().item()
        if float_model is not None:
            fpred = float_model(images).argmax(1)
            float_ok += (fpred == target).sum().item()
            agree += (fpred == pred).sum().item()
    n = len(x)
    print(f"integer path: top-1 {100 * int_ok / n:.2f} on {n} test images")
    if float_model is not None:
        print(f"float fake-quant model: top-1 {100 * float_ok / n:.2f}; predictions agree on "
              f"{agree} of {n} ({100 * agree / n:.2f}%)")


def get_args_parser():
    p = ArgumentParser(description="APoT integer export and shift-add inference")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="checkpoint -> integer codes file")
    e.add_argument("checkpoint")
    e.add_argument("-a", "--arch", default="res20", choices=sorted(ARCHS))
    e.add_argument("--bit", type=int, choices=[2, 3, 4, 5], default=None,
                   help="bit-width (needed for checkpoints that do not record it)")
    e.add_argument("--quant", default="apot", choices=["apot", "pot", "uniform"])
    e.add_argument("--out", default="")
    i = sub.add_parser("infer", help="integer inference on the CIFAR test set")
    i.add_argument("file")
    i.add_argument("--data", default="./data")
    i.add_argument("--compare", default="", metavar="CKPT", help="also run this float model")
    i.add_argument("--limit", type=int, default=0, help="only the first N test images")
    i.add_argument("--batch", type=int, default=100)
    i.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None):
    os.environ.setdefault("APOT_COMPILE", "0")  # a few batches: compilation would not pay off
    cli_main(get_args_parser(), lambda args: {"export": cmd_export, "infer": cmd_infer}[
        args.command](args), argv)


if __name__ == "__main__":
    main()
