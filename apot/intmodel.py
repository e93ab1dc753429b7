"""The integer model's file and the model built from it (`export.py export` and `infer`).

The file (format apot-int-v1, a torch.save of tensors and numbers) holds, per quantized conv,
the b-bit weight codes (sign bit and level index, bit-packed), the layer's rescale (weight
alpha over the weight levels' integer denominator, times the activation alpha over the
activation levels' denominator; the weight normalisation needs nothing more, as the fake-quant
model does not multiply the std back) and the activation alpha and level integers; and for the
rest what inference needs: 9-bit-or-more signed codes and a scale for the 8-bit first conv and
last fc, BatchNorm, the fc bias.

The model built from it computes every quantized conv from that file alone: the input becomes
activation codes, their level integers, and sum_e (weight-bit-e mask @ activations) << e is
accumulated in int64, i.e. additions, subtractions and shifts, then rescaled once. BatchNorm,
ReLU, pooling, the residual adds and the 8-bit first/last layers stay in float.
"""
import torch
import torch.nn as nn

from apot.eightbit import codes_8bit, first_conv, last_fc
from apot.errors import UserError
from apot.intmath import (int_conv2d, integer_terms, pack_codes, split_weight_codes,
                          unpack_codes, weight_codes)
from apot.projection import project_index

FORMAT = "apot-int-v1"


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
