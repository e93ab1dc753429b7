"""Integer export and shift-add inference (apot/export.py, apot/intmath.py and the two command
lines, CIFAR/export.py and ImageNet/export.py)."""
import json
import os
import re

import numpy as np
import pytest
import torch

from apot.errors import UserError
from apot.intmath import int_conv2d, pack_codes, split_weight_codes, unpack_codes, weight_codes
from apot.intmodel import IntConv, export_conv
from apot.levels import QUANTS, level_integers, level_set, weight_level_integers, weight_levels
from CIFAR.export import main as EXPORT
from CIFAR.quant_layer import QuantConv2d
from helpers import (CIFAR_DIR, OFFICIAL, agreement, assert_one_line_error,
                     calibrated_imagenet_checkpoint, make_image_folder, quant_conv, run_in_process)
from ImageNet.export import main as IMAGENET_EXPORT
from ImageNet.quant_layer import QuantConv2d as ImageNetQuantConv2d


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 9, 16])
def test_pack_unpack_round_trips_every_code(bits):
    codes = np.tile(np.arange(2**bits), 3)
    np.random.default_rng(bits).shuffle(codes)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-codes.size * bits // 8)
    assert unpack_codes(packed, bits, codes.size).tolist() == codes.tolist()
    with pytest.raises(ValueError):
        pack_codes([2**bits], bits)


@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_weight_codes_hold_sign_and_index(bit):
    n = 2 ** (bit - 1)
    sign = torch.tensor([0, 1] * n)
    index = torch.arange(n).repeat_interleave(2)
    codes = weight_codes(sign, index, bit)
    assert codes.max() < 2**bit
    s, i = split_weight_codes(codes, bit)
    assert torch.equal(i, index) and torch.equal(s, 1 - 2 * sign)


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("B", [2, 3, 4, 5])
def test_level_integers_are_the_levels(B, quant):
    ints, denom = level_integers(B, quant)
    levels = level_set(B, quant).double()
    assert ints.dtype == torch.int64 and ints[-1] == denom
    assert torch.allclose(ints.double() / denom, levels, rtol=1e-7, atol=0)
    if quant == "apot":  # the set bits are the terms: one per term set
        assert max(bin(v).count("1") for v in ints.tolist()) == {2: 1, 3: 2, 4: 2, 5: 3}[B]


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_int_conv2d_multiplies_every_weight_level_by_every_activation_level(bit, quant):
    """A 1x1 conv of one channel: every activation integer (a batch of 1x1 images) times every
    signed weight integer (the output channels), against Python's integer products."""
    w_ints, w_denom = weight_level_integers(bit, quant)
    a_ints, _ = level_integers(bit, quant)
    assert torch.allclose(w_ints.double() / w_denom, weight_levels(bit, quant).double(), rtol=1e-7)
    w = torch.cat([w_ints, w_ints]).view(-1, 1, 1, 1)
    sign = torch.tensor([1] * len(w_ints) + [-1] * len(w_ints)).view(-1, 1, 1, 1)
    acc, _ = int_conv2d(a_ints.view(-1, 1, 1, 1), sign, w, stride=1, padding=0)
    expect = [[s * wi * a for s, wi in zip(sign.flatten().tolist(), w.flatten().tolist())]
              for a in a_ints.tolist()]
    assert acc.dtype == torch.int64 and acc.flatten(1).tolist() == expect


def test_int_conv2d_equals_an_integer_reference():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 100, (2, 3, 7, 7), generator=g)
    w = torch.randint(0, 48, (4, 3, 3, 3), generator=g)
    sign = torch.randint(0, 2, (4, 3, 3, 3), generator=g) * 2 - 1
    acc, ops = int_conv2d(a, sign, w, stride=2, padding=1)
    ref = torch.nn.functional.conv2d(a.double(), (sign * w).double(), stride=2, padding=1)
    assert acc.dtype == torch.int64 and torch.equal(acc, ref.long())
    # closed form, counted per weight instead of per bit plane: 4x4 output positions; one shift
    # and one accumulate per output channel, position and bit position in use; one add per set
    # bit of every weight and position
    positions = 4 * 4
    bits_in_use = {e for v in w.flatten().tolist() for e in range(6) if v >> e & 1}
    set_bits_total = sum(bin(v).count("1") for v in w.flatten().tolist())
    assert ops == {"shifts": len(bits_in_use) * 4 * positions,
                   "adds": set_bits_total * positions + len(bits_in_use) * 4 * positions}


def test_int_conv2d_sums_exactly_below_2_to_the_53_and_refuses_beyond():
    ones = torch.ones(1, 1, 3, 3, dtype=torch.int64)
    big = 2**49 + 1  # 50 significant bits: float32 would round it, float64 sums of 9 are exact
    acc, _ = int_conv2d(ones * big, ones, ones * 3, stride=1, padding=0)
    assert acc.flatten().tolist() == [27 * big]
    with pytest.raises(ValueError, match="too large for exact float64 sums"):
        int_conv2d(ones * 2**50, ones, ones * 3, stride=1, padding=0)  # 9 * 2**50 >= 2**53


@pytest.mark.parametrize("variant", ["CIFAR", "ImageNet"])
@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_integer_conv_equals_the_float_fake_quant_conv(bit, quant, variant):
    torch.manual_seed(bit)
    conv = quant_conv(variant, bit, quant, stride=1 if variant == "CIFAR" else 2)
    x = torch.relu(torch.randn(4, 8, 9, 9) * 1.5)
    with torch.no_grad():
        ref = conv(x)
        out = IntConv(export_conv(conv))(x)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_export_refuses_grouped_convs():
    conv = ImageNetQuantConv2d(8, 16, 3, padding=1, groups=2, bit=4)
    with pytest.raises(UserError, match="groups 2: only square, undilated, ungrouped convs"):
        export_conv(conv)


def test_export_refuses_corrupt_and_full_precision_checkpoints(tmp_path):
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"garbage" * 50)
    proc = run_in_process(EXPORT, "export", bad, "--bit", "4", cwd=tmp_path)
    assert_one_line_error(proc, r"^error: cannot read checkpoint .*bad\.pth\.tar")
    from CIFAR.resnet import resnet20_cifar
    fp = tmp_path / "fp.pth.tar"
    torch.save({"state_dict": resnet20_cifar(bit=32).state_dict(), "bit": 32, "arch": "res20"}, fp)
    proc = run_in_process(EXPORT, "export", fp, cwd=tmp_path)
    assert_one_line_error(proc, r"32-bit checkpoint: only quantized models export")
    proc = run_in_process(EXPORT, "infer", bad, "--data", tmp_path, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: cannot read .*bad\.pth\.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth.tar", "fp.pth.tar"]


def test_export_and_infer_our_checkpoint_end_to_end(tiny_cifar, tmp_path):
    from CIFAR.resnet import resnet20_cifar
    torch.manual_seed(0)
    model = resnet20_cifar(bit=3)
    # BatchNorm statistics of an untrained net let activations grow layer by layer, and float
    # rounding then flips codes chaotically; calibrated statistics make it behave like a trained one
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = None
    with torch.no_grad():
        model(torch.randn(64, 3, 32, 32))
    ckpt = tmp_path / "ours.pth.tar"
    torch.save({"state_dict": model.state_dict(), "bit": 3, "arch": "res20", "quant": "apot"}, ckpt)
    summary = tmp_path / "m.json"
    proc = run_in_process(EXPORT, "export", ckpt, "--out", tmp_path / "m.apot", "--summary",
                          summary, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    size = os.path.getsize(tmp_path / "m.apot")
    assert re.search(rf"wrote .*m\.apot: {size:,} bytes \(float checkpoint .*: "
                     rf"{os.path.getsize(ckpt):,} bytes", proc.stdout)
    assert re.search(r"^total\s+[\d,]+\s+[\d,]+\s+[\d,]+", proc.stdout, re.M)
    codes = re.search(r"^20 quantized convs, ([\d,]+) bytes of 3-bit codes$", proc.stdout, re.M)
    proc = run_in_process(EXPORT, "infer", tmp_path / "m.apot", "--data", tiny_cifar,
                          "--compare", ckpt, "--float64", "--no-progress", "--summary", summary,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    agree = [agreement(proc.stdout, f"{ref} fake-quant model", 40) for ref in ("float", "float64")]
    assert min(agree) >= 39
    found = re.search(r"^float64 fake-quant model: .*, with the float model's on (39|40)$",
                      proc.stdout, re.M)
    assert found
    # the summary holds what the two commands printed, for programs to read
    written = json.loads(summary.read_text())
    assert written["export"] == {
        "file": str(tmp_path / "m.apot"), "bytes": size, "checkpoint": str(ckpt),
        "checkpoint_bytes": os.path.getsize(ckpt), "quantized_convs": 20,
        "code_bytes": int(codes.group(1).replace(",", ""))}
    top1 = re.search(r"^integer path: top-1 (\d+\.\d\d) on 40", proc.stdout, re.M).group(1)
    infer = written["infer"]
    assert infer["images"] == 40 and f"{100 * infer['correct'] / 40:.2f}" == top1
    assert [infer[ref]["agree"] for ref in ("float", "float64")] == agree
    assert infer["float64"]["agree_with_float"] == int(found.group(1))
    summary.write_text("not json")
    proc = run_in_process(EXPORT, "infer", tmp_path / "m.apot", "--data", tiny_cifar,
                          "--no-progress", "--summary", summary, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --summary .*m\.json exists and is not a JSON summary")
    assert summary.read_text() == "not json"
    proc = run_in_process(EXPORT, "infer", tmp_path / "m.apot", "--data", tiny_cifar,
                          "--float64", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --float64 runs the --compare model in float64: give "
                                r"--compare CKPT$")


class BigOffset(torch.nn.Module):
    """Logits (v + 1e8) - 1e8 and 0.25 for an image's first pixel v: in float32 (a spacing of
    8 at 1e8) v = 0.3 cancels to 0 and loses to 0.25, in float64 it stays 0.3 and wins. A
    Linear adds the 1e8, so that images and weights of different types are an error."""

    def __init__(self):
        super().__init__()
        self.add_big = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.add_big.weight.fill_(1)
            self.add_big.bias.fill_(1e8)

    def forward(self, x):
        v = self.add_big(x.flatten(1)[:, :1]).squeeze(1) - 1e8
        return torch.stack([v, torch.full_like(v, 0.25)], 1)


def test_compare_runs_the_float_model_in_float32_and_float64(capsys):
    from types import SimpleNamespace

    from apot.compare import compare
    images = torch.tensor([0.3, 0.3, 0.1, 16.0]).view(4, 1, 1, 1)
    target = torch.tensor([0, 0, 1, 0])  # what exact arithmetic predicts
    variant = SimpleNamespace(eval_batches=lambda args, num_classes: (4, iter(
        [(images[:2], target[:2]), (images[2:], target[2:])])))
    args = SimpleNamespace(float64=True, batch=2, no_progress=True)
    exact = lambda x: torch.stack([x.flatten(1)[:, 0], torch.full((len(x),), 0.25)], 1)  # noqa: E731
    counts = compare(exact, BigOffset(), "exact", args, variant, 2)
    assert counts == {"images": 4, "correct": 4, "float": {"correct": 2, "agree": 2},
                      "float64": {"correct": 4, "agree": 4, "agree_with_float": 2}}
    assert capsys.readouterr().out.splitlines() == [
        "exact: top-1 100.00 on 4 test images",
        # float32 predicts [1, 1, 1, 0]
        "float fake-quant model: top-1 50.00; predictions agree on 2 of 4 (50.00%)",
        "float64 fake-quant model: top-1 100.00; predictions agree on 4 of 4 (100.00%), with "
        "the float model's on 2"]


@pytest.mark.slow
@pytest.mark.needs_data
@pytest.mark.parametrize("bit", [4, 2])
def test_authors_checkpoints_run_on_integers(bit, tmp_path):
    ckpt = OFFICIAL / f"res20_{bit}bit.pth.tar"
    out = tmp_path / "m.apot"
    proc = run_in_process(EXPORT, "export", ckpt, "--bit", bit, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    n = 200
    proc = run_in_process(EXPORT, "infer", out, "--data", CIFAR_DIR, "--compare", ckpt,
                          "--limit", n, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    int_acc = float(re.search(r"integer path: top-1 (\d+\.\d+)", proc.stdout).group(1))
    float_acc = float(re.search(r"fake-quant model: top-1 (\d+\.\d+)", proc.stdout).group(1))
    agree = int(re.search(r"agree on (\d+) of", proc.stdout).group(1))
    assert agree >= 0.998 * n and abs(int_acc - float_acc) <= 100 / n + 1e-9


def test_float64_twin_holds_the_weights_float32_quantizes():
    """A 2-bit weight put exactly on the midpoint 0.5 in float32 (a tie, level 0) that is above
    it in float64 (level 1): the twin keeps level 0, and otherwise computes in float64."""
    import copy

    import torch.nn.functional as F

    from apot.eightbit import first_conv
    from apot.compare import float64_twin
    torch.manual_seed(0)
    model = torch.nn.Sequential(first_conv(3, 8, 3, padding=1, bias=False),
                                QuantConv2d(8, 8, 3, padding=1, bit=2)).eval()
    conv = model[1]
    x32 = conv.weight_quant.normalise(conv.weight.detach()).flatten()
    x64 = conv.weight_quant.normalise(conv.weight.detach().double()).flatten()
    i = torch.nonzero((x32 > 0) & (x64 > x32.double()))[0, 0]
    with torch.no_grad():
        conv.weight_quant.wgt_alpha.fill_(2 * x32[i])  # x32[i] / alpha is 0.5 exactly
    assert conv.quantized_weight().flatten()[i] == 0
    assert copy.deepcopy(conv).double().quantized_weight().flatten()[i] == 2 * x32[i]
    twin = float64_twin(model)
    weights = [m.quantized_weight().detach().double() for m in model]
    assert [torch.equal(t.quantized_weight(), w) for t, w in zip(twin, weights)] == [True, True]
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = twin(x)
        expected = F.conv2d(twin[1].quantize_input(F.conv2d(x, weights[0], padding=1)),
                            weights[1], padding=1)
    assert out.dtype == torch.float64 and torch.equal(out, expected)
    assert conv.weight.dtype == torch.float32 and conv.quantized_weight().flatten()[i] == 0


@pytest.mark.slow
def test_imagenet_export_and_infer_end_to_end(tiny_imagenet, tmp_path):
    ckpt = calibrated_imagenet_checkpoint(tmp_path / "r18.pth.tar", 4)
    out = tmp_path / "r18.apot"  # the default name: r18.pth.tar -> r18.apot
    proc = run_in_process(IMAGENET_EXPORT, "export", ckpt, "--image-size", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert "operations for one 32x32 image:" in proc.stdout
    assert "19 quantized convs" in proc.stdout  # 8 blocks of 2, 3 downsampling 1x1 convs
    assert re.search(r"^conv1 \(8-bit\)\s+[\d,]+\s+0\s+0\s+[\d,]+$", proc.stdout, re.M)
    proc = run_in_process(IMAGENET_EXPORT, "infer", out, "--data", tiny_imagenet, "--compare", ckpt,
                      "--image-size", "32", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "integer path: top-1" in proc.stdout
    assert agreement(proc.stdout, "float fake-quant model", 6) >= 5


@pytest.mark.slow
def test_each_command_line_refuses_the_other_variants_files(tmp_path):
    ckpt = calibrated_imagenet_checkpoint(tmp_path / "r18.pth.tar", 2)
    proc = run_in_process(EXPORT, "export", ckpt, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*r18\.pth\.tar holds a resnet18 model, not one of "
                                r"CIFAR's \(res110, res20")
    out = tmp_path / "r18.apot"
    proc = run_in_process(IMAGENET_EXPORT, "export", ckpt, "--out", out, "--image-size", "16",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_in_process(EXPORT, "infer", out, "--data", tmp_path, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*r18\.apot holds a resnet18 model, not one of CIFAR's")
    proc = run_in_process(IMAGENET_EXPORT, "infer", out, "--data", tmp_path, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*val not found: --data must be an ImageFolder root "
                                r"holding val/")
    two = make_image_folder(tmp_path / "two", classes=2)
    proc = run_in_process(IMAGENET_EXPORT, "infer", out, "--data", two, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*val has 2 class folders, the model 3 classes$")
