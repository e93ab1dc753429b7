"""The ImageNet variant: quantizer gradients against float64 references, torchvision-layout
ResNets, and main.py end to end on a tiny ImageFolder (conftest's)."""
import re
import subprocess

import pytest
import torch
import torchvision

from apot.levels import activation_levels, weight_levels
from conftest import ROOT, assert_one_line_error, last_line, make_image_folder, run_script
from ImageNet.quant_layer import QuantConv2d
from ImageNet.resnet import ARCHS

MAIN = ROOT / "ImageNet" / "main.py"
FAST = ["--image-size", "32", "--workers", "0", "--no-progress", "--no-compile",
        "--warmup-iters", "2", "--warmup-lr", "0.001", "--lr", "0.01"]


def nearest64(x, levels):
    lv = torch.as_tensor(levels, dtype=torch.float64)
    return lv[(x.unsqueeze(-1) - lv).abs().argmin(-1)]


def reference_conv_quant(w, a, w_alpha, a_alpha, bit):
    """Float64 autograd reference of the ImageNet quantizers, brute-force projection."""
    w_norm = (w - w.mean()) / w.std()
    if bit == 2:
        x = w_norm / w_alpha
        q = x.detach().clamp(-1, 1).round()
    else:
        x = (w_norm / w_alpha).clamp(-1, 1)
        q = nearest64(x.detach().abs(), weight_levels(bit)) * x.detach().sign()
    wq = ((q - x).detach() + x) * w_alpha
    xa = (a / a_alpha).clamp(0, 1)
    qa = nearest64(xa.detach(), activation_levels(bit))
    aq = ((qa - xa).detach() + xa) * a_alpha
    return wq, aq


@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_imagenet_gradients_match_a_float64_reference(bit):
    torch.manual_seed(bit)
    conv = QuantConv2d(8, 8, 3, bit=bit)
    with torch.no_grad():
        conv.weight_alpha.fill_(1.1 if bit > 2 else 0.6)
        conv.act_alpha.fill_(1.9)
    a = (torch.rand(2, 8, 6, 6) * 3 - 0.5).requires_grad_()
    gw = torch.randn_like(conv.weight)
    ga = torch.randn_like(a)
    wq = conv.quantized_weight()
    from ImageNet.quant_layer import quantize_act
    aq = quantize_act(a, conv.act_alpha, conv.act_levels, conv.act_mids)
    ((wq * gw).sum() + (aq * ga).sum()).backward()

    w64 = conv.weight.detach().double().requires_grad_()
    a64 = a.detach().double().requires_grad_()
    wa64 = torch.tensor(conv.weight_alpha.item(), dtype=torch.float64, requires_grad=True)
    aa64 = torch.tensor(conv.act_alpha.item(), dtype=torch.float64, requires_grad=True)
    rwq, raq = reference_conv_quant(w64, a64, wa64, aa64, bit)
    ((rwq * gw.double()).sum() + (raq * ga.double()).sum()).backward()

    assert torch.allclose(wq.detach().double(), rwq.detach(), atol=1e-5)
    assert torch.allclose(aq.detach().double(), raq.detach(), atol=1e-5)
    # differentiable normalisation: the gradient flows through mean and std too
    assert torch.allclose(conv.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-6)
    assert torch.allclose(a.grad.double(), a64.grad, atol=1e-6)
    assert torch.allclose(conv.weight_alpha.grad.double(), wa64.grad, rtol=1e-4, atol=1e-5)
    assert torch.allclose(conv.act_alpha.grad.double(), aa64.grad, rtol=1e-4, atol=1e-5)

    # the alpha gradients autograd derives are the RCF ones
    x = (a64.detach() / aa64.detach())
    qa = nearest64(x.clamp(0, 1), activation_levels(bit))
    rcf = (ga.double() * torch.where(x > 1, torch.ones_like(x),
                                     torch.where(x < 0, torch.zeros_like(x), qa - x))).sum()
    assert torch.isclose(conv.act_alpha.grad.double(), rcf, rtol=1e-4, atol=1e-5)
    # activation gradient: zero outside [0, alpha]
    inside = (x >= 0) & (x <= 1)
    assert torch.equal(a.grad[~inside], torch.zeros_like(a.grad[~inside]))


@pytest.mark.parametrize("bit", [2, 3, 4])
def test_clipped_weight_gradient_above_2_bits_and_calibrated_at_2(bit):
    """With mean/std fixed aside, the gradient reaching W~ is zero outside [-alpha, alpha] for
    b > 2 and passes everywhere at b = 2."""
    from ImageNet.quant_layer import quantize_weight, quantize_weight_ternary
    w_norm = torch.linspace(-3, 3, 60, dtype=torch.float32).requires_grad_()  # avoids |x| == 1
    alpha = torch.tensor(1.0)
    if bit == 2:
        out = quantize_weight_ternary(w_norm, alpha)
    else:
        levels = weight_levels(bit)
        out = quantize_weight(w_norm, alpha, levels, (levels[1:] + levels[:-1]) / 2)
    out.sum().backward()
    outside = w_norm.detach().abs() > 1
    expect = torch.ones(60) if bit == 2 else (~outside).float()
    assert torch.equal(w_norm.grad, expect)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_state_dict_keys_are_torchvisions_plus_alphas(arch):
    tv = set(getattr(torchvision.models, arch)(weights=None).state_dict())
    assert set(ARCHS[arch](bit=32).state_dict()) == tv
    quant = ARCHS[arch](bit=4)
    convs = [n for n, m in quant.named_modules() if isinstance(m, QuantConv2d)]
    n_convs = sum(1 for k in tv if k.endswith("weight") and ("conv" in k or "downsample.0" in k))
    assert len(convs) == n_convs - 1  # every conv but the first
    alphas = {f"{c}.{a}" for c in convs for a in ("act_alpha", "weight_alpha")}
    assert set(quant.state_dict()) == tv | alphas


def test_torchvision_weights_load_into_every_bit_width():
    tv = torchvision.models.resnet18(weights=None)
    model = ARCHS["resnet18"](bit=3)
    from apot.training import load_weights
    missing = load_weights(model, tv.state_dict(), "torchvision", may_miss=lambda k: "alpha" in k)
    assert missing and all(k.endswith("alpha") for k in missing)
    assert torch.equal(model.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)


@pytest.mark.parametrize("bit", [4, 32])
def test_train_and_evaluate_resnet18(bit, tiny_imagenet, tmp_path):
    proc = run_script(MAIN, "-a", "resnet18", "--bit", bit, "--data", tiny_imagenet, "-b", "4",
                      "--epochs", "1", "--save-dir", tmp_path / "run", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\* Best@1 \d+\.\d\d", last_line(proc.stdout))
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,lr,train_loss") and "test_top5" in log[0] and len(log) == 2
    proc = run_script(MAIN, "-a", "resnet18", "--bit", bit, "--data", tiny_imagenet, "-e",
                      "--init", tmp_path / "run" / "model_best.pth.tar", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\* Prec@1 \d+\.\d\d Prec@5 \d+\.\d\d", last_line(proc.stdout))


def test_torchrun_two_processes_checkpoint_from_rank0_and_resume(tiny_imagenet, tmp_path):
    def launch(*extra):
        return subprocess.run(
            ["torchrun", "--standalone", "--nproc_per_node", "2", MAIN, "-a", "resnet18",
             "--bit", "4", "--data", tiny_imagenet, "-b", "4", "--save-dir", tmp_path / "run",
             *FAST, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=300)

    first = launch("--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("* Best@1") == 1  # rank 0 alone reports
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "args.json", "checkpoint.pth.tar", "log.csv", "model_best.pth.tar"]
    second = launch("--epochs", "2", "--resume", tmp_path / "run" / "checkpoint.pth.tar")
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout
    assert torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)["epoch"] == 2
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 3


def test_missing_split_is_a_clear_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    proc = run_script(MAIN, "--data", tmp_path, *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*val not found: --data must hold train/ and val/")


def test_empty_class_folder_is_a_clear_error(tmp_path):
    data = make_image_folder(tmp_path / "d", empty_class=True)
    proc = run_script(MAIN, "--data", data, *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*train: .*class2")


def test_unsupported_bit_is_refused(tiny_imagenet, tmp_path):
    proc = run_script(MAIN, "--data", tiny_imagenet, "--bit", "8", *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: argument --bit: invalid choice: 8")
    assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        QuantConv2d(3, 3, 3, bit=6)


def test_unreachable_pretrained_weights_are_a_clear_error(tiny_imagenet, tmp_path):
    proc = run_script(MAIN, "--data", tiny_imagenet, "--pretrained", "torchvision",
                      "--no-download", "-b", "4", "--save-dir", tmp_path / "r", *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --pretrained torchvision needs a download")


def test_mismatched_checkpoint_is_a_clear_error(tiny_imagenet, tmp_path):
    bad = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), bad)
    proc = run_script(MAIN, "--data", tiny_imagenet, "--pretrained", bad, "-b", "4",
                      "--save-dir", tmp_path / "r", *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: checkpoint .*r34.pth does not fit this model")


def test_run_sh_applies_the_recipe_and_passes_arguments_through(tiny_imagenet, tmp_path):
    import json
    weights = tmp_path / "resnet18_fp32.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), weights)
    cmd = ["bash", ROOT / "ImageNet" / "run.sh", "resnet18", "4", tiny_imagenet, "-b", "4",
           "--epochs", "1", "--image-size", "32", "--workers", "0", "--no-progress",
           "--no-compile", "--no-download"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PRETRAINED": str(weights)})
    assert proc.returncode == 0, proc.stderr
    args = json.load(open(tmp_path / "result" / "resnet18_4bit" / "args.json"))
    assert (args["lr"], args["warmup_lr"], args["weight_decay"]) == (0.01, 0.0244, 1e-4)
    assert args["warmup_iters"] == 2500 and args["lr_steps"] == [30, 60, 90]
    assert args["pretrained"] == str(weights) and args["batch_size"] == 4  # extra args win
    bad = subprocess.run(["bash", ROOT / "ImageNet" / "run.sh", "resnet50", "7", tiny_imagenet],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "no published recipe for resnet50 at 7 bits" in bad.stderr
