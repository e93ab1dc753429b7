"""CIFAR ResNet-(6n+2) with APoT-quantized block and shortcut convs (spec section 3).

State-dict names follow the authors' checkpoints: layerX.Y.convZ.{weight, act_alpha,
weight_quant.wgt_alpha}, layerX.0.downsample.{0,1}.*, conv1, bn1, fc.
"""
import math

import torch.nn as nn

from apot.errors import UnsupportedValue
from apot.levels import check_model_bit

from .quant_layer import QuantConv2d, first_conv, last_fc


def make_conv(in_planes, out_planes, kernel_size, stride, bit, quant):
    """A block or shortcut conv: quantized for b < 32, plain at 32 bits."""
    padding = kernel_size // 2
    if bit == 32:
        return nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, bias=False)
    return QuantConv2d(in_planes, out_planes, kernel_size, stride, padding, bias=False,
                       bit=bit, quant=quant)


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride, bit, quant):
        super().__init__()
        self.conv1 = make_conv(inplanes, planes, 3, stride, bit, quant)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = make_conv(planes, planes, 3, 1, bit, quant)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            # "Option B" shortcut, quantized like the block convs.
            self.downsample = nn.Sequential(make_conv(inplanes, planes, 1, stride, bit, quant),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNetCifar(nn.Module):
    def __init__(self, depth, bit=32, num_classes=10, quant="apot"):
        super().__init__()
        if (depth - 2) % 6:
            raise UnsupportedValue(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        check_model_bit(bit)
        n = (depth - 2) // 6
        self.bit = bit
        self.conv1 = first_conv(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 16
        self.layer1 = self._make_layer(16, n, 1, bit, quant)
        self.layer2 = self._make_layer(32, n, 2, bit, quant)
        self.layer3 = self._make_layer(64, n, 2, bit, quant)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = last_fc(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes, blocks, stride, bit, quant):
        layers = [BasicBlock(self.inplanes, planes, stride, bit, quant)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, 1, bit, quant) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet20_cifar(bit=32, num_classes=10, quant="apot"):
    return ResNetCifar(20, bit, num_classes, quant)


def resnet32_cifar(bit=32, num_classes=10, quant="apot"):
    return ResNetCifar(32, bit, num_classes, quant)


def resnet44_cifar(bit=32, num_classes=10, quant="apot"):
    return ResNetCifar(44, bit, num_classes, quant)


def resnet56_cifar(bit=32, num_classes=10, quant="apot"):
    return ResNetCifar(56, bit, num_classes, quant)


def resnet110_cifar(bit=32, num_classes=10, quant="apot"):
    return ResNetCifar(110, bit, num_classes, quant)


ARCHS = {"res20": resnet20_cifar, "res32": resnet32_cifar, "res44": resnet44_cifar,
         "res56": resnet56_cifar, "res110": resnet110_cifar}
