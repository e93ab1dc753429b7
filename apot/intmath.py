"""Integer APoT arithmetic: a quantized conv as integers, bit-packed codes and the shift-and-add
integer convolution.

Before the spec's normalisation every APoT level is a sum of powers of two, i.e. an integer
over a power-of-two denominator; scaled by that denominator the levels are integers whose set
bits are exactly the APoT terms (the term sets use disjoint powers), so multiplying by a level
is one shift and add per set bit. The normalising factor 1 / max and alpha go into one float
scale per layer.
"""
import numpy as np
import torch
import torch.nn.functional as F

from apot.errors import UserError
from apot.levels import level_integers, weight_level_integers
from apot.projection import project_index


# --- a quantized conv as integers ---------------------------------------------------------------

def check_geometry(conv):
    """int_conv2d computes square, undilated, ungrouped convolutions: the ResNets' only kind."""
    if (conv.groups != 1 or conv.dilation != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1]
            or conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1]):
        raise UserError(f"cannot export a conv with kernel {conv.kernel_size}, stride "
                        f"{conv.stride}, padding {conv.padding}, dilation {conv.dilation}, groups "
                        f"{conv.groups}: only square, undilated, ungrouped convs are supported")


@torch.no_grad()
def layer_terms(conv):
    """What the forward of a quantized conv of either variant computes from: x = clamp(normalised
    weight / alpha_w, -1, 1), whose |x| it projects onto the weight levels (its
    weight_clipping()), the level family, both alphas and both midpoint sets."""
    w_norm, w_alpha, w_mids = conv.weight_clipping()
    return dict(x=(w_norm / w_alpha).clamp(-1, 1), bit=conv.bit, quant=conv.quant,
                w_alpha=w_alpha.item(), w_mids=w_mids, a_alpha=conv.act_alpha.item(),
                a_mids=conv.act_mids)


def integer_terms(conv):
    """A quantized conv as integers, from the same arithmetic as its forward pass: its
    layer_terms plus the weights' level index and sign, both level sets as integers over their
    denominators, and the one float rescale of the integer accumulator."""
    check_geometry(conv)
    t = layer_terms(conv)
    w_ints, w_denom = weight_level_integers(t["bit"], t["quant"])
    a_ints, a_denom = level_integers(t["bit"], t["quant"])
    return dict(t, index=project_index(t["x"].abs(), t["w_mids"]), negative=t["x"] < 0,
                w_ints=w_ints, w_denom=w_denom, a_ints=a_ints, a_denom=a_denom,
                scale=t["w_alpha"] / w_denom * t["a_alpha"] / a_denom)


# --- bit-packed codes ---------------------------------------------------------------------------

def pack_codes(codes, bits):
    """Pack non-negative integer codes < 2^bits, `bits` bits each, into bytes (little-endian)."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(f"codes do not fit in {bits} bits")
    planes = (codes[:, None] >> np.arange(bits)) & 1
    return torch.from_numpy(np.packbits(planes.astype(np.uint8).ravel(), bitorder="little"))


def unpack_codes(packed, bits, count):
    planes = np.unpackbits(packed.numpy(), count=count * bits, bitorder="little")
    planes = planes.reshape(count, bits).astype(np.int64)
    return torch.from_numpy((planes << np.arange(bits)).sum(1))


def weight_codes(sign, index, bits):
    """Sign bit (1 for negative) above the b-1 level-index bits."""
    return (sign.long() << (bits - 1)) | index.long()


def split_weight_codes(codes, bits):
    sign = 1 - 2 * ((codes >> (bits - 1)) & 1)
    return sign, codes & ((1 << (bits - 1)) - 1)


# --- shift-and-add arithmetic -------------------------------------------------------------------

def int_conv2d(a_int, w_sign, w_int, stride, padding):
    """Integer conv: a_int (N, C, H, W) int64, weights as sign (+-1) and level integers
    (O, C, k, k). Returns the int64 accumulator and the operation counts it performed.

    For every set bit e of the weight integers, the weights having it form a {-1, 0, +1} mask;
    the mask times the unfolded activations is additions and subtractions only, and its result
    is shifted left by e. acc = sum_e (mask_e @ A) << e.

    The sums of +-activations run as float64 matrix products, ten times faster than int64 ones
    on a CPU: integers below 2**53 are exact in float64, and every partial sum is bounded by
    max|a| times the C*k*k terms (checked).
    """
    n, c, h, w = a_int.shape
    o, _, k, _ = w_int.shape
    if a_int.numel() and int(a_int.abs().max()) * c * k * k >= 2**53:
        raise ValueError("activation integers too large for exact float64 sums")
    padded = F.pad(a_int.double(), (padding, padding, padding, padding))
    cols = padded.unfold(2, k, stride).unfold(3, k, stride)  # N, C, Ho, Wo, k, k
    ho, wo = cols.shape[2], cols.shape[3]
    cols = cols.permute(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * k * k)
    w_int = w_int.reshape(o, -1)
    w_sign = w_sign.reshape(o, -1)
    acc = torch.zeros(n, ho * wo, o, dtype=torch.int64)
    adds = shifts = 0
    for e in range(int(w_int.max()).bit_length()):
        mask = ((w_int >> e) & 1) * w_sign
        nnz = int(mask.ne(0).sum())
        if nnz == 0:
            continue
        acc += (cols @ mask.t().double()).long() << e
        adds += nnz * ho * wo          # one add/subtract per nonzero mask entry and position
        shifts += o * ho * wo          # one shift and one add per output and bit
        adds += o * ho * wo
    return acc.permute(0, 2, 1).reshape(n, o, ho, wo), {"adds": adds, "shifts": shifts}
