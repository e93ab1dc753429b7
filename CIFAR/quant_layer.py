"""APoT quantizers of the CIFAR variant (the authors' Jan 2020 code, which made the CIFAR numbers).

Weights: normalised by their detached mean and std, clipped to [-alpha_w, alpha_w], projected
onto sign * (B = b - 1 levels); straight-through (unclipped) weight gradient, RCF alpha gradient.
Activations: clipped to alpha_a, projected onto the B = b levels; zero gradient above alpha_a,
RCF alpha gradient. Level sets, projection and the 8-bit first/last layers come from `apot`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from apot.calibrated import calibrated_weight_quant
from apot.eightbit import first_conv, last_fc  # noqa: F401  (re-exported for resnet.py)
from apot.levels import activation_levels, check_quantized_bit, weight_levels
from apot.projection import maybe_compile, midpoints, project

WEIGHT_ALPHA_INIT = 3.0  # three standard deviations of the normalised weight
ACT_ALPHA_INIT = 8.0


@maybe_compile
def _act_quant_forward(a, alpha, levels, mids):
    return project((a / alpha).clamp(max=1), levels, mids) * alpha


@maybe_compile
def _act_quant_backward(grad, a, out, alpha):
    """Zero input gradient above alpha; RCF: sum(g * (1 if x > 1 else q - x)), x = a / alpha,
    q - x = (out - a) / alpha."""
    clipped = a / alpha > 1
    grad_alpha = (grad * torch.where(clipped, torch.ones_like(a), (out - a) / alpha)).sum()
    # where(..., zeros_like(a), ...) keeps a's memory format (channels_last); a compiled
    # masked_fill returns NCHW, and the ReLU backward that follows is 6x slower on mixed layouts.
    return torch.where(clipped, torch.zeros_like(a), grad), grad_alpha


# The backward takes q - x from the forward's output instead of projecting again: both the input
# (the preceding layer's output) and the output (the conv's saved input) are kept alive anyway,
# so saving them costs no memory.
class _ActQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, alpha, levels, mids):
        out = _act_quant_forward(a, alpha, levels, mids)
        ctx.save_for_backward(a, out, alpha)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_a, grad_alpha = _act_quant_backward(grad, *ctx.saved_tensors)
        return grad_a, grad_alpha, None, None


class weight_quantize_fn(nn.Module):
    """Per-layer weight quantizer; a module so the checkpoint key is `weight_quant.wgt_alpha`."""

    def __init__(self, bit, quant="apot"):
        super().__init__()
        check_quantized_bit(bit)
        self.bit = bit
        self.wgt_alpha = nn.Parameter(torch.tensor(WEIGHT_ALPHA_INIT))
        levels = weight_levels(bit, quant)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("mids", midpoints(levels), persistent=False)

    @staticmethod
    def normalise(weight):
        """(W - mean) / std, statistics from the data only: no gradient flows through them."""
        return (weight - weight.detach().mean()) / weight.detach().std()

    def forward(self, weight):
        return calibrated_weight_quant(self.normalise(weight), self.wgt_alpha, self.levels,
                                       self.mids)


class QuantConv2d(nn.Conv2d):
    """Conv2d with APoT-quantized weights (b bits, signed) and input activations (b bits)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, bit=4, quant="apot"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias)
        check_quantized_bit(bit)
        self.bit, self.quant = bit, quant
        self.weight_quant = weight_quantize_fn(bit, quant)
        self.act_alpha = nn.Parameter(torch.tensor(ACT_ALPHA_INIT))
        levels = activation_levels(bit, quant)
        self.register_buffer("act_levels", levels, persistent=False)
        self.register_buffer("act_mids", midpoints(levels), persistent=False)

    def quantize_input(self, x):
        return _ActQuant.apply(x, self.act_alpha, self.act_levels, self.act_mids)

    def weight_clipping(self):
        """(normalised weight, weight alpha, weight midpoints): what the forward clips and
        projects, for apot.intmath.layer_terms."""
        wq = self.weight_quant
        return wq.normalise(self.weight), wq.wgt_alpha, wq.mids

    def quantized_weight(self):
        return self.weight_quant(self.weight)

    def forward(self, x):
        return F.conv2d(self.quantize_input(x), self.quantized_weight(), self.bias,
                        self.stride, self.padding, self.dilation, self.groups)
