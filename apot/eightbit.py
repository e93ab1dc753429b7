"""The "8-bit" weight-only fake quantization of the first conv and the last fc (both variants).

Scale m = max(W), the SIGNED maximum as in the authors' code, so the grid has step m / 127
but codes below -127 occur (the released checkpoints reach -145): this is not the int8 range.
The op order (div, mul, round, div, mul) is the authors', so their checkpoints evaluate alike.
"""
import torch.nn as nn
import torch.nn.functional as F


def codes_8bit(weight):
    """(integer-valued float codes round(W / m * 127), m = max(W)): the grid of quantize_8bit."""
    m = weight.detach().max()
    return weight.detach().div(m).mul(127).round(), m


def quantize_8bit(weight):
    """Weight on the max(W)/127 grid, with a straight-through gradient."""
    codes, m = codes_8bit(weight)
    return (codes.div(127).mul(m) - weight).detach() + weight


class first_conv(nn.Conv2d):
    """First conv of every model: 8-bit weights, full-precision (unquantized) input."""

    def quantized_weight(self):
        return quantize_8bit(self.weight)

    def forward(self, x):
        return F.conv2d(x, self.quantized_weight(), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class last_fc(nn.Linear):
    """Classifier of every model: 8-bit weights, full-precision bias and input."""

    def quantized_weight(self):
        return quantize_8bit(self.weight)

    def forward(self, x):
        return F.linear(x, self.quantized_weight(), self.bias)
