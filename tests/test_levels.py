"""Level sets, exactly as the spec's table and the authors' float32 construction give them."""
from fractions import Fraction as Fr

import numpy as np
import pytest
import torch

from apot.levels import (QUANTS, SUPPORTED_BITS, activation_levels, build_power_value, level_set,
                         uniform_levels, weight_levels)

SPEC_TABLE = {
    2: [Fr(0), Fr(1, 4), Fr(1, 2), Fr(1)],
    3: [Fr(0), Fr(1, 10), Fr(2, 10), Fr(3, 10), Fr(4, 10), Fr(6, 10), Fr(8, 10), Fr(1)],
    4: [Fr(0), Fr(1, 48), Fr(1, 24), Fr(1, 16), Fr(1, 12), Fr(1, 8), Fr(1, 6), Fr(3, 16),
        Fr(1, 4), Fr(1, 3), Fr(3, 8), Fr(1, 2), Fr(2, 3), Fr(11, 16), Fr(3, 4), Fr(1)],
}
SPEC_B5_ROUNDED = [0, .01, .02, .03, .04, .05, .06, .07, .08, .10, .12, .14, .16, .17, .20, .21,
                   .24, .28, .32, .34, .36, .38, .48, .52, .64, .65, .68, .69, .72, .76, .96, 1]
TERMS = {  # the spec's term sets, written out independently of apot.levels
    2: [[0, Fr(1, 2), Fr(1, 4), Fr(1, 8)]],
    3: [[0, Fr(1, 2), Fr(1, 4), Fr(1, 16)], [0, Fr(1, 8)]],
    4: [[0, Fr(1, 2), Fr(1, 8), Fr(1, 32)], [0, Fr(1, 4), Fr(1, 16), Fr(1, 64)]],
    5: [[0, Fr(1, 2), Fr(1, 8), Fr(1, 64)], [0, Fr(1, 4), Fr(1, 16), Fr(1, 128)], [0, Fr(1, 32)]],
}


def exact_sums(B):
    sums = {Fr(0)}
    for terms in TERMS[B]:
        sums = {s + t for s in sums for t in terms}
    return sorted(sums)


def authors_float32(B):
    """float32(sum) * float32(1 / max), in numpy float32: the authors' arithmetic."""
    sums = np.array([float(s) for s in exact_sums(B)], dtype=np.float32)
    return sums * (np.float32(1.0) / sums.max())


@pytest.mark.parametrize("B", [2, 3, 4])
def test_apot_levels_equal_the_spec_table_exactly(B):
    expected = torch.tensor([float(f) for f in SPEC_TABLE[B]], dtype=torch.float32)
    assert torch.equal(build_power_value(B), expected)


def test_apot_5bit_levels_match_the_authors_float32_values_and_the_table():
    levels = build_power_value(5)
    assert torch.equal(levels, torch.from_numpy(authors_float32(5)))
    assert levels.tolist() == sorted(levels.tolist()) and len(set(levels.tolist())) == 32
    assert np.round(levels.numpy().astype(np.float64), 2).tolist() == SPEC_B5_ROUNDED
    exact = np.array([float(s / exact_sums(5)[-1]) for s in exact_sums(5)])
    assert np.all(np.abs(levels.numpy() - exact) <= np.spacing(np.float32(1.0)))


@pytest.mark.parametrize("B", SUPPORTED_BITS)
def test_apot_levels_are_the_authors_construction(B):
    levels = build_power_value(B)
    assert levels.dtype == torch.float32 and levels.shape == (2**B,)
    assert levels[0] == 0 and levels[-1] == 1
    assert torch.equal(levels, torch.from_numpy(authors_float32(B)))


@pytest.mark.parametrize("B", SUPPORTED_BITS)
def test_pot_and_uniform_levels(B):
    pot = [0.0] + [2.0 ** -k for k in range(2**B - 2, -1, -1)]
    assert build_power_value(B, additive=False).tolist() == pot
    assert level_set(B, "pot").tolist() == pot
    n = 2**B - 1
    assert torch.equal(uniform_levels(B), torch.tensor([i / n for i in range(n + 1)]))


@pytest.mark.parametrize("B", [0, 1, 6, 8, 32, -2, 2.5, "4"])
def test_unsupported_bits_are_refused_with_the_supported_values(B):
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        build_power_value(B)
    with pytest.raises(ValueError):
        level_set(B, "uniform")


def test_unknown_family_is_refused():
    assert QUANTS == ("apot", "pot", "uniform")
    with pytest.raises(ValueError, match=r"^unknown level family quant='log': choose one of "
                                         r"\('apot', 'pot', 'uniform'\)$"):
        level_set(4, "log")


@pytest.mark.parametrize("quant", QUANTS)
def test_weights_use_b_minus_1_magnitude_bits_and_2bit_weights_are_ternary(quant):
    assert weight_levels(2, quant).tolist() == [0.0, 1.0]
    for b in (3, 4, 5):
        assert torch.equal(weight_levels(b, quant), level_set(b - 1, quant))
        assert torch.equal(activation_levels(b, quant), level_set(b, quant))
    with pytest.raises(ValueError):
        weight_levels(6, quant)
