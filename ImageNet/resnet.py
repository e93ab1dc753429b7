"""ResNet-18/34/50 in torchvision's layout with APoT-quantized convs (spec section 5).

The network is torchvision's own, with every conv but the first swapped for a QuantConv2d of
the same shape, the first conv for the 8-bit first_conv and the fc for the 8-bit last_fc, so
the state-dict keys are exactly torchvision's (plus act_alpha and weight_alpha per quantized
conv below 32 bits) and torchvision's ImageNet weights load by name.
"""
import torch.nn as nn
import torchvision

from apot.levels import check_model_bit

from .quant_layer import QuantConv2d, first_conv, last_fc


def _swap_conv(conv, new_cls, **kwargs):
    new = new_cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.dilation, conv.groups, conv.bias is not None, **kwargs)
    new.weight.data.copy_(conv.weight.data)  # keep torchvision's initialisation
    return new


def quantize_resnet(model, bit, quant="apot"):
    """Swap a torchvision ResNet's layers in place for the APoT ones; returns the model."""
    check_model_bit(bit)
    model.conv1 = _swap_conv(model.conv1, first_conv)
    fc = last_fc(model.fc.in_features, model.fc.out_features)
    fc.load_state_dict(model.fc.state_dict())
    model.fc = fc
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d:
                setattr(parent, name, _swap_conv(child, QuantConv2d, bit=bit, quant=quant))
    return model


def _build(name, bit, num_classes, quant):
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    return quantize_resnet(model, bit, quant)


def resnet18(bit=32, num_classes=1000, quant="apot"):
    return _build("resnet18", bit, num_classes, quant)


def resnet34(bit=32, num_classes=1000, quant="apot"):
    return _build("resnet34", bit, num_classes, quant)


def resnet50(bit=32, num_classes=1000, quant="apot"):
    return _build("resnet50", bit, num_classes, quant)


ARCHS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}

