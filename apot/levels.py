"""Level sets of APoT, power-of-two and uniform quantization, normalised so the top level is 1.

Levels are built the way the authors build them: the sums of the term sets in float32 (exact,
they are short dyadic fractions), then multiplied by float32(1 / max). At B = 5 this differs
from the correctly rounded rationals by one ulp on five levels; we keep the authors' values so
that their checkpoints evaluate the same.
"""
import itertools
from fractions import Fraction

import torch

from apot.errors import UnsupportedValue

SUPPORTED_BITS = (2, 3, 4, 5)
QUANTS = ("apot", "pot", "uniform")  # the level families, named as --quant names them

# Term sets before normalisation, base bit-width k = 2; odd B adds a single-bit term.
_APOT_TERMS = {
    2: [[0.0, 2**-1, 2**-2, 2**-3]],
    3: [[0.0, 2**-1, 2**-2, 2**-4], [0.0, 2**-3]],
    4: [[0.0, 2**-1, 2**-3, 2**-5], [0.0, 2**-2, 2**-4, 2**-6]],
    5: [[0.0, 2**-1, 2**-3, 2**-6], [0.0, 2**-2, 2**-4, 2**-7], [0.0, 2**-5]],
}


def _check_bits(B):
    if B not in SUPPORTED_BITS:
        raise UnsupportedValue(
            f"unsupported bit-width B={B!r}: APoT levels exist for B in {SUPPORTED_BITS} only")


def check_quantized_bit(bit):
    """A quantized layer's bit-width: one of SUPPORTED_BITS."""
    if bit not in SUPPORTED_BITS:
        raise UnsupportedValue(f"unsupported bit-width {bit!r}: quantized layers take bit in "
                               f"{SUPPORTED_BITS} (use 32 for the full-precision model)")


def check_model_bit(bit):
    """A model's bit-width: one of SUPPORTED_BITS, or 32 for full precision."""
    if bit != 32 and bit not in SUPPORTED_BITS:
        raise UnsupportedValue(f"unsupported bit-width {bit!r}: models take bit in "
                               f"{SUPPORTED_BITS} or 32 (full precision)")


def _normalise(sums):
    values = torch.tensor(sorted(set(sums)), dtype=torch.float32)
    return values * (1.0 / values.max())


def build_power_value(B, additive=True):
    """Sorted levels in [0, 1] with top level 1: APoT (additive) or plain power-of-two."""
    _check_bits(B)
    if additive:
        sums = [sum(terms) for terms in itertools.product(*_APOT_TERMS[B])]
    else:
        sums = _pot_sums(B)
    return _normalise(sums)


def uniform_levels(B):
    _check_bits(B)
    n = 2**B - 1
    return torch.arange(n + 1, dtype=torch.float32) / n


def level_set(B, quant="apot"):
    """The B-bit magnitude levels of one level family: quant = "apot", "pot" or "uniform"."""
    if quant not in QUANTS:
        raise UnsupportedValue(f"unknown level family quant={quant!r}: choose one of {QUANTS}")
    if quant == "uniform":
        return uniform_levels(B)
    return build_power_value(B, additive=quant == "apot")


def activation_levels(bit, quant="apot"):
    """Unsigned activations of a b-bit layer use the B = b set: 2^b levels."""
    return level_set(bit, quant)


def weight_levels(bit, quant="apot"):
    """Magnitudes of signed b-bit weights: the B = b - 1 set; b = 2 is ternary in every family."""
    if bit == 2:
        return torch.tensor([0.0, 1.0])
    _check_bits(bit)
    return level_set(bit - 1, quant)


def _pot_sums(B):
    return [0.0] + [2.0 ** -(i + 1) for i in range(2**B - 1)]


def level_integers(B, quant="apot"):
    """The levels as integers over one denominator: (sorted int64 numerators, denominator), with
    level_set(B, quant) == numerators / denominator up to float32 rounding.

    For APoT and PoT the numerators are the unnormalised sums times 2^D (D the finest term's
    exponent), so their set bits are exactly the power-of-two terms of each level; the
    denominator is the largest numerator (the spec's normalisation to a top level of 1).
    """
    if quant == "uniform":
        _check_bits(B)
        return torch.arange(2**B, dtype=torch.int64), 2**B - 1
    _check_bits(B)
    sums = ([sum(t) for t in itertools.product(*_APOT_TERMS[B])] if quant == "apot"
            else _pot_sums(B))
    exact = [Fraction(x) for x in sums]  # the sums are dyadic: exact in binary floating point
    denom = max(f.denominator for f in exact)
    ints = torch.tensor(sorted({int(f * denom) for f in exact}), dtype=torch.int64)
    return ints, int(ints.max())


def weight_level_integers(bit, quant="apot"):
    """Numerators and denominator of the weight magnitudes of a b-bit layer."""
    if bit == 2:
        return torch.tensor([0, 1]), 1
    return level_integers(bit - 1, quant)
