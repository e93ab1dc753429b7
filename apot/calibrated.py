"""The authors' weight quantizer with "calibrated" gradients, shared by both variants: the CIFAR
variant's weights at every bit-width and the ImageNet variant's 2-bit (ternary) weights.

Forward: x = w / alpha clipped to [-1, 1], |x| projected onto the levels, sign kept, times alpha.
Backward: the weight gradient passes straight through, NOT clipped; alpha gets the RCF gradient
sum(g * (sign(x) if |x| > 1 else q - x)). A straight-through estimator on the unclipped x would
give sign(x) - x outside the range instead, and autograd through the clamp would zero the weight
gradient there: neither is the authors' function.
"""
import torch

from apot.projection import maybe_compile, project


@maybe_compile
def _forward(w, alpha, levels, mids):
    x = (w / alpha).clamp(-1, 1)
    return project(x.abs(), levels, mids) * x.sign() * alpha


@maybe_compile
def _alpha_grad(grad, w, out, alpha):
    """RCF: sum(g * (sign(x) if |x| > 1 else q - x)), x = w / alpha, q - x = (out - w) / alpha."""
    x = w / alpha
    return (grad * torch.where(x.abs() > 1, x.sign(), (out - w) / alpha)).sum()


# The backward takes q - x from the forward's output instead of projecting again.
class _CalibratedWeightQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, alpha, levels, mids):
        out = _forward(w, alpha, levels, mids)
        ctx.save_for_backward(w, out, alpha)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, _alpha_grad(grad, *ctx.saved_tensors), None, None


def calibrated_weight_quant(w_norm, alpha, levels, mids):
    """Normalised weights quantized onto +-levels * alpha (sorted magnitudes, their midpoints)."""
    return _CalibratedWeightQuant.apply(w_norm, alpha, levels, mids)
