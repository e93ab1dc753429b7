"""torch.hub entry points: our trained APoT CIFAR-10 ResNets and the ImageNet ResNet builders.

    model = torch.hub.load("path/to/clone", "apot_resnet20", source="local", bit=4,
                           pretrained=True)
    model = torch.hub.load("path/to/clone", "apot_resnet56", source="local", bit=4)
    model = torch.hub.load("path/to/clone", "apot_resnet18", source="local", bit=4)

The CIFAR weights are our reference runs' model_best.pth.tar, read from result/reference/ beside
this file (never downloaded). Only the model code is imported: no training, data or compiled
code; the quantizers compile on the first forward, as in main.py (APOT_COMPILE=0: eager).
"""
import csv as _csv
import json as _json
import os as _os
import re as _re

import torch as _torch

from apot.runfolder import stage_name as _stage_name

dependencies = ["torch", "torchvision"]

_REFERENCE = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "result", "reference")
_STAGES = (32, 4, 3, 2)  # a reference chain's stages, in the order CIFAR/run.sh trains them
# the bit-widths whose stage of our reference chain has finished, per CIFAR network
_TRAINED = {"res20": _STAGES, "res56": _STAGES}


def _weights_path(arch, bit):
    if bit not in _TRAINED.get(arch, ()):
        have = ", ".join(f"{a} bit={'/'.join(map(str, bits))}" for a, bits in _TRAINED.items()
                         if bits)
        raise ValueError(f"no trained {arch} model at bit={bit!r}: we have {have}")
    path = _os.path.join(_REFERENCE, f"{arch}_{bit}bit", "model_best.pth.tar")
    if not _os.path.isfile(path):
        raise FileNotFoundError(f"the {arch} {_stage_name(bit)} weights are missing: {path} (a "
                                "partial clone? they are committed in result/reference/)")
    return path


def _load(model, path):
    from apot.checkpoint import load_checkpoint, strip_module_prefix
    state_dict = strip_module_prefix(load_checkpoint(path)["state_dict"])
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model ({len(missing)} keys missing, "
                         f"{len(unexpected)} unexpected; first: {(missing + unexpected)[0]}): "
                         "wrong network, bit-width or number of classes?")
    return model


def _cifar(arch, bit, pretrained, quant):
    from CIFAR.resnet import ARCHS
    model = ARCHS[arch](bit=bit, num_classes=10, quant=quant)
    if pretrained:
        _load(model, _weights_path(arch, bit))
    # main.py's layout: with inputs normalised as CIFAR.data.Normalize gives them (also
    # channels_last), the model computes exactly what `main.py -e` does
    return model.to(memory_format=_torch.channels_last).eval()


def _recipe_line(arch, bit):
    """One docstring line of a trained stage, read from its files: test top-1 and recipe."""
    folder = _os.path.join(_REFERENCE, f"{arch}_{bit}bit")
    try:  # the small text files, not the checkpoints: every torch.hub.load imports this module
        with open(_os.path.join(folder, "log.csv")) as f:
            acc = [float(row["test_acc"]) for row in _csv.DictReader(f)]
        with open(_os.path.join(folder, "args.json")) as f:
            args = _json.load(f)
    except (OSError, ValueError, KeyError) as e:
        return f"    bit={bit}: log unreadable here ({type(e).__name__})"
    init = _re.search(r"_(\d+)bit", args.get("init", ""))
    start = f", from the {_stage_name(int(init.group(1)))} model" if init else ", from scratch"
    # --bn-groups K: trained as the authors' K-GPU DataParallel, BatchNorm over batch/K images
    groups = args.get("bn_groups", 1)
    bn = f", BatchNorm over {args['batch_size'] // groups}-image slices" if groups > 1 else ""
    # model_best.pth.tar holds the first epoch that reached the best (strictly higher replaces)
    return (f"    bit={bit}: test top-1 {max(acc):.2f} (epoch {acc.index(max(acc))} of "
            f"{args['epochs']}); lr {args['lr']}, weight decay {args['weight_decay']}{start}{bn}")


def _cifar_doc(arch, name):
    """The entry's help: what pretrained=True loads, each trained stage's top-1 and recipe."""
    trained = _TRAINED[arch]
    lines = [_recipe_line(arch, b) for b in trained]
    training = [b for b in _STAGES if b not in trained]
    if training:
        lines.append(f"    bit={'/'.join(map(str, training))}: none yet, its chain is still "
                     f"training (result/reference/{arch}_*bit)")
    stages = "\n".join(lines)
    return (f"{name} on CIFAR-10 with APoT weights and activations (32 = full precision), in\n"
            "eval mode. pretrained=True loads our reference run of that bit-width (CIFAR/run.sh,\n"
            "seed 0, batch 128, lr x0.1 at epochs 150 and 225; the README's table):\n"
            f"{stages}\n"
            "Inputs: 32x32 images normalised with CIFAR-10's mean and std (CIFAR.data.Normalize).")


def apot_resnet20(bit=4, pretrained=False, quant="apot"):
    return _cifar("res20", bit, pretrained, quant)


def apot_resnet56(bit=4, pretrained=False, quant="apot"):
    return _cifar("res56", bit, pretrained, quant)


apot_resnet20.__doc__ = _cifar_doc("res20", "ResNet-20")
apot_resnet56.__doc__ = _cifar_doc("res56", "ResNet-56")


def _imagenet(name, bit, pretrained, num_classes, quant):
    from ImageNet.resnet import ARCHS
    model = ARCHS[name](bit=bit, num_classes=num_classes, quant=quant)
    if pretrained is True:
        raise ValueError(f"we have trained no {name}: pretrained takes the path of your own "
                         "checkpoint (ImageNet/main.py's model_best.pth.tar), or False")
    if pretrained:
        _load(model, pretrained)
    return model


def apot_resnet18(bit=4, pretrained=False, num_classes=1000, quant="apot"):
    """ImageNet ResNet-18 in torchvision's layout with APoT convs (32 = full precision), in
    training mode, for ImageNet/main.py's recipe; pretrained: False, or the path of a
    checkpoint of this network and bit-width (yours: we have trained none)."""
    return _imagenet("resnet18", bit, pretrained, num_classes, quant)


def apot_resnet34(bit=4, pretrained=False, num_classes=1000, quant="apot"):
    """ImageNet ResNet-34, as apot_resnet18."""
    return _imagenet("resnet34", bit, pretrained, num_classes, quant)


def apot_resnet50(bit=4, pretrained=False, num_classes=1000, quant="apot"):
    """ImageNet ResNet-50, as apot_resnet18."""
    return _imagenet("resnet50", bit, pretrained, num_classes, quant)
