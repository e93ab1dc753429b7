"""The CIFAR-variant quantizers against independent float64 references (spec section 2)."""
import math

import numpy as np
import pytest
import torch

from apot.eightbit import first_conv, last_fc, quantize_8bit
from apot.levels import QUANTS, activation_levels, weight_levels
from apot.projection import compilation, midpoints, project
from CIFAR.quant_layer import QuantConv2d
from CIFAR.resnet import ARCHS

MODES = ["eager", "compiled"]


@pytest.fixture(params=MODES)
def mode(request):
    with compilation(request.param == "compiled"):
        yield request.param


def brute_nearest(x64, levels):
    """Float64 nearest level by a full |levels| x N search, and the distance to a midpoint."""
    lv = levels.double().numpy()
    idx = np.abs(x64[:, None] - lv[None, :]).argmin(1)
    mids = (lv[1:] + lv[:-1]) / 2
    gap = np.abs(x64[:, None] - mids[None, :]).min(1)
    return lv[idx], gap


def away_from_midpoints(x64, levels, rel=1e-6):
    _, gap = brute_nearest(x64, levels)
    return gap > rel * np.maximum(np.abs(x64), 1e-12)


@pytest.mark.parametrize("B", [2, 3, 4, 5])
def test_projection_equals_float64_brute_force(B, mode):
    from apot.projection import maybe_compile
    levels = activation_levels(B)
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(B)) * 1.6 - 0.3
    proj = maybe_compile(project)(x, levels, midpoints(levels))
    ref, _ = brute_nearest(x.double().numpy(), levels)
    keep = away_from_midpoints(x.double().numpy(), levels)
    assert keep.mean() > 0.999
    assert np.array_equal(proj.double().numpy()[keep], ref[keep])


def test_projection_sends_exact_midpoints_to_the_lower_level():
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    mids = midpoints(levels)
    assert project(mids, levels, mids).tolist() == [0.0, 0.25, 0.5]
    assert project(torch.tensor([-5.0, 7.0]), levels, mids).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("B", [2, 3, 4, 5])
def test_training_projection_and_export_codes_agree_on_every_tie(B, mode):
    # project (training) and project_index (integer export) state the tie rule separately
    from apot.projection import maybe_compile, project_index
    levels = activation_levels(B)
    mids = midpoints(levels)
    near = torch.stack([mids, torch.nextafter(mids, mids + 1), torch.nextafter(mids, mids - 1)])
    x = torch.cat([near.flatten(), levels, torch.rand(10_000, generator=torch.Generator()
                                                      .manual_seed(B)) * 1.4 - 0.2])
    codes = project_index(x, mids)
    assert torch.equal(maybe_compile(project)(x, levels, mids), levels[codes])
    assert torch.equal(codes[:len(mids)], torch.arange(len(mids)))  # a midpoint goes down


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_layer_values_are_the_float64_nearest_levels(bit, quant):
    """A layer's quantized weights and inputs against a float64 brute-force projection of the
    normalised, clipped values (elements within float32 rounding of a midpoint left out), and
    inputs take all 2^b levels."""
    torch.manual_seed(bit)
    conv = QuantConv2d(16, 32, 3, bit=bit, quant=quant)
    wq = conv.weight_quant(conv.weight).detach().double().numpy().ravel()
    w64 = conv.weight.detach().double().numpy().ravel()
    alpha_w = conv.weight_quant.wgt_alpha.item()
    x = np.clip((w64 - w64.mean()) / w64.std(ddof=1) / alpha_w, -1, 1)
    q, _ = brute_nearest(np.abs(x), weight_levels(bit, quant))
    keep = away_from_midpoints(np.abs(x), weight_levels(bit, quant))
    assert keep.mean() > 0.99
    expect = np.sign(x) * (q.astype(np.float32) * np.float32(alpha_w))  # one float32 product
    assert np.array_equal(wq[keep], expect[keep])
    a = torch.relu(torch.randn(8, 16, 10, 10) * 6)
    aq = conv.quantize_input(a).detach().double().numpy().ravel()
    xa = np.minimum(a.double().numpy().ravel() / conv.act_alpha.item(), 1)
    q, _ = brute_nearest(xa, activation_levels(bit, quant))
    keep = away_from_midpoints(xa, activation_levels(bit, quant))
    assert keep.mean() > 0.99
    assert np.allclose(aq[keep], (q * conv.act_alpha.item())[keep], rtol=1e-7, atol=0)
    if quant != "pot":  # PoT's smallest levels (8 * 2^-30 at 5 bits) are not hit at random
        assert len(np.unique(aq)) == 2 ** bit


@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_activation_gradients_follow_the_spec(bit, mode):
    torch.manual_seed(0)
    conv = QuantConv2d(4, 4, 1, bit=bit)
    alpha = 1.7
    with torch.no_grad():
        conv.act_alpha.fill_(alpha)
    a = (torch.rand(4, 4, 16, 16) * 2.5 * alpha).requires_grad_()
    g = torch.randn_like(a)
    out = conv.quantize_input(a)
    (out * g).sum().backward()

    a64, g64 = a.detach().double().numpy().ravel(), g.double().numpy().ravel()
    x = a64 / alpha
    levels = activation_levels(bit)
    q, _ = brute_nearest(np.minimum(x, 1.0), levels)
    keep = away_from_midpoints(np.minimum(x, 1.0), levels) & (np.abs(x - 1) > 1e-5)
    assert np.allclose(out.detach().double().numpy().ravel()[keep], (q * alpha)[keep], rtol=1e-6)
    # dL/da = g below alpha, 0 above: exact
    expect_grad_a = np.where(x > 1, 0.0, g64)
    assert np.array_equal(a.grad.double().numpy().ravel()[keep], expect_grad_a[keep])
    # dL/dalpha = sum(g * (1 if x > 1 else q - x)), the RCF gradient
    rcf = np.sum(g64 * np.where(x > 1, 1.0, q - x))
    assert math.isclose(conv.act_alpha.grad.item(), rcf, rel_tol=1e-4, abs_tol=1e-4)


@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_weight_gradients_follow_the_spec(bit, mode):
    torch.manual_seed(1)
    conv = QuantConv2d(16, 32, 3, bit=bit)
    alpha = 1.3 if bit > 2 else 0.7
    with torch.no_grad():
        conv.weight_quant.wgt_alpha.fill_(alpha)
    before = conv.weight.detach().clone()
    out = conv.weight_quant(conv.weight)
    assert torch.equal(conv.weight.detach(), before), "the weight was modified in place"
    g = torch.randn_like(out)
    (out * g).sum().backward()

    w = before.double().numpy().ravel()
    g64 = g.double().numpy().ravel()
    std = w.std(ddof=1)
    x = (w - w.mean()) / std / alpha
    levels = weight_levels(bit)
    xc = np.clip(x, -1, 1)
    q, _ = brute_nearest(np.abs(xc), levels)
    q = q * np.sign(xc)
    keep = away_from_midpoints(np.abs(xc), levels) & (np.abs(np.abs(x) - 1) > 1e-5)
    assert np.allclose(out.detach().double().numpy().ravel()[keep], (q * alpha)[keep], rtol=1e-6)
    # straight through the clip and projection; mean and std carry no gradient
    assert np.allclose(conv.weight.grad.double().numpy().ravel(), g64 / std, rtol=1e-5)
    rcf = np.sum(g64 * np.where(np.abs(x) > 1, np.sign(x), q - x))
    assert math.isclose(conv.weight_quant.wgt_alpha.grad.item(), rcf, rel_tol=1e-4, abs_tol=1e-4)


def test_two_bit_weights_are_ternary():
    torch.manual_seed(2)
    conv = QuantConv2d(16, 16, 3, bit=2)
    wq = conv.weight_quant(conv.weight).detach() / conv.weight_quant.wgt_alpha.detach()
    assert set(torch.unique(wq).tolist()) == {-1.0, 0.0, 1.0}


def test_state_dict_names_and_initial_alphas_are_the_authors():
    conv = QuantConv2d(3, 8, 3, bit=4)
    sd = conv.state_dict()
    assert set(sd) == {"weight", "act_alpha", "weight_quant.wgt_alpha"}
    assert sd["act_alpha"].item() == 8.0 and sd["weight_quant.wgt_alpha"].item() == 3.0


@pytest.mark.parametrize("bit", [0, 1, 6, 8, 16])
def test_unsupported_bits_are_a_clear_error(bit):
    with pytest.raises(ValueError, match="bit"):
        QuantConv2d(3, 8, 3, bit=bit)
    with pytest.raises(ValueError, match="bit"):
        ARCHS["res20"](bit=bit)


def test_eight_bit_grid_and_straight_through_gradient():
    w = (torch.randn(64, 27) * 0.3).requires_grad_()
    wq = quantize_8bit(w)
    m = w.detach().max()
    codes = wq.detach() / (m / 127)
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.max().round() == 127 and codes.min() < 0
    g = torch.randn_like(w)
    (wq * g).sum().backward()
    assert torch.equal(w.grad, g)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("bit", [32, 4, 2])
def test_first_and_last_layers_lie_on_the_max_over_127_grid(arch, bit):
    torch.manual_seed(3)
    model = ARCHS[arch](bit=bit)
    layers = [m for m in model.modules() if isinstance(m, (first_conv, last_fc))]
    assert [type(m) for m in layers] == [first_conv, last_fc]
    for layer in layers:
        wq = quantize_8bit(layer.weight).detach()
        step = layer.weight.detach().max() / 127
        codes = wq / step
        assert torch.allclose(codes, codes.round(), atol=1e-3)
        w64 = layer.weight.detach().double()
        expect = torch.round(w64 / w64.max() * 127)  # the grid in float64, the signed max at 127
        assert torch.equal(codes.round().double(), expect) and expect.max() == 127
    quantized = [m for m in model.modules() if isinstance(m, QuantConv2d)]
    blocks = (int(arch[3:]) - 2) // 6  # per stage: a depth-d CIFAR ResNet has 3 stages of them
    assert len(quantized) == (0 if bit == 32 else 3 * blocks * 2 + 2)  # + 2 shortcut convs
