"""APoT quantizers of the ImageNet variant (the authors' May 2020 code), where they differ from
the CIFAR folder's:

- weight normalisation is differentiable (mean and std are not detached);
- quantizers are autograd plus a straight-through estimator on the projection only, so the
  clamp stops the gradient outside [-alpha, alpha] (weights, b > 2) and outside [0, alpha]
  (activations), and the alpha gradient that autograd derives is the RCF one;
- 2-bit weights are ternary, round(clamp(x, -1, 1)), with the authors' "calibrated" gradients
  (`apot.calibrated`): the weight gradient passes everywhere, alpha gets the RCF gradient;
- alpha_a starts at 6.0, the parameters are `act_alpha` and `weight_alpha` on the conv itself;
- a uniform mode (quant="uniform", the authors' power=False): round(clamp(x) * (2^k - 1)) /
  (2^k - 1), k = b - 1 for weights.
Level sets, projection and the 8-bit first/last layers are the shared ones in `apot`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from apot.calibrated import calibrated_weight_quant
from apot.eightbit import first_conv, last_fc  # noqa: F401  (re-exported for resnet.py)
from apot.levels import activation_levels, check_model_bit, weight_levels
from apot.projection import maybe_compile, midpoints, project

WEIGHT_ALPHA_INIT = 3.0
ACT_ALPHA_INIT = 6.0

_project = maybe_compile(project)


def straight_through(x, q):
    """q in the forward pass, the identity's gradient in the backward pass."""
    return (q - x).detach() + x


def quantize_weight(w_norm, alpha, levels, mids):
    """Clip to [-1, 1] (the clamp zeroes the gradient outside), project |x|, keep the sign."""
    x = (w_norm / alpha).clamp(-1, 1)
    with torch.no_grad():
        q = _project(x.abs(), levels, mids) * x.sign()
    return straight_through(x, q) * alpha


def quantize_act(a, alpha, levels, mids):
    x = (a / alpha).clamp(0, 1)
    with torch.no_grad():
        q = _project(x, levels, mids)
    return straight_through(x, q) * alpha


class QuantConv2d(nn.Conv2d):
    """Conv2d with b-bit weights and input activations; a plain conv at bit = 32.

    quant names the level family: "apot", "pot" or "uniform" (the authors' switches power=True,
    additive=True; power=True, additive=False; power=False).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, bit=5, quant="apot"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias)
        check_model_bit(bit)
        self.bit = bit
        if bit == 32:
            return
        self.quant = quant
        self.act_alpha = nn.Parameter(torch.tensor(ACT_ALPHA_INIT))
        self.weight_alpha = nn.Parameter(torch.tensor(WEIGHT_ALPHA_INIT))
        for name, levels in (("weight", weight_levels(bit, quant)),
                             ("act", activation_levels(bit, quant))):
            self.register_buffer(f"{name}_levels", levels, persistent=False)
            self.register_buffer(f"{name}_mids", midpoints(levels), persistent=False)

    def normalised_weight(self):
        w = self.weight
        return (w - w.mean()) / w.std()  # differentiable normalisation

    def quantized_weight(self):
        w_norm = self.normalised_weight()
        if self.bit == 2:  # levels {0, 1}: the projection rounds, ties to 0 as round() does
            return calibrated_weight_quant(w_norm, self.weight_alpha, self.weight_levels,
                                           self.weight_mids)
        return quantize_weight(w_norm, self.weight_alpha, self.weight_levels, self.weight_mids)

    def weight_clipping(self):
        """(normalised weight, weight alpha, weight midpoints): what the forward clips and
        projects (at 2 bits rounds, the same as projecting onto {0, 1}), for
        apot.intmath.layer_terms."""
        return self.normalised_weight(), self.weight_alpha, self.weight_mids

    def forward(self, x):
        if self.bit == 32:
            return super().forward(x)
        x = quantize_act(x, self.act_alpha, self.act_levels, self.act_mids)
        return F.conv2d(x, self.quantized_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)
