"""The ImageNet variant: quantizer gradients against float64 references, torchvision-layout
ResNets, and main.py end to end on a tiny ImageFolder (helpers.make_image_folder)."""
import re
import subprocess

import pytest
import torch
import torchvision

from apot.levels import QUANTS, activation_levels, weight_levels
from helpers import (ROOT, assert_one_line_error, last_line, make_image_folder,
                      run_in_process, run_with_stand_in_python)
from ImageNet.main import main as imagenet_main
from ImageNet.quant_layer import QuantConv2d
from ImageNet.resnet import ARCHS

MAIN = ROOT / "ImageNet" / "main.py"
FAST = ["--image-size", "32", "--workers", "0", "--no-progress", "--no-compile",
        "--warmup-iters", "2", "--warmup-lr", "0.001", "--lr", "0.01"]


def nearest64(x, levels):
    lv = torch.as_tensor(levels, dtype=torch.float64)
    return lv[(x.unsqueeze(-1) - lv).abs().argmin(-1)]


class AuthorsTernary(torch.autograd.Function):
    """The authors' calibrated 2-bit weight function as they wrote it by hand: round(clamp(x)),
    weight gradient passed unchanged, alpha gradient sign(x) outside [-1, 1] and q - x inside."""

    @staticmethod
    def forward(ctx, w_norm, alpha):
        x = w_norm / alpha
        q = x.clamp(-1, 1).round()
        ctx.save_for_backward(x, q)
        return q * alpha

    @staticmethod
    def backward(ctx, g):
        x, q = ctx.saved_tensors
        outside = x.abs() > 1
        return g, (g * (x.sign() * outside + (q - x) * ~outside)).sum()


def authors_quant(w, a, w_alpha, a_alpha, bit, quant):
    """Float64 reference of the authors' May 2020 ImageNet QuantConv2d quantizers: differentiable
    normalisation, autograd through the clamp, a straight-through estimator on the projection
    (brute-force argmin, or round() for the uniform family), and the hand-written ternary
    function at 2 bits. Returns (quantized weight, quantized activation)."""
    w_norm = (w - w.mean()) / w.std()
    if bit == 2:
        wq = AuthorsTernary.apply(w_norm, w_alpha)
    else:
        x = (w_norm / w_alpha).clamp(-1, 1)
        if quant == "uniform":
            n = 2 ** (bit - 1) - 1
            q = (x.detach() * n).round() / n
        else:
            q = nearest64(x.detach().abs(), weight_levels(bit, quant)) * x.detach().sign()
        wq = ((q - x).detach() + x) * w_alpha
    xa = (a / a_alpha).clamp(0, 1)
    if quant == "uniform":
        qa = (xa.detach() * (2 ** bit - 1)).round() / (2 ** bit - 1)
    else:
        qa = nearest64(xa.detach(), activation_levels(bit, quant))
    return wq, ((qa - xa).detach() + xa) * a_alpha


def level_grids(bit, quant):
    """The magnitude grids the authors' weight and activation quantizers round to."""
    if quant == "uniform":
        n_w, n_a = 2 ** (bit - 1) - 1, 2 ** bit - 1
        return (torch.arange(n_w + 1, dtype=torch.float64) / n_w,
                torch.arange(n_a + 1, dtype=torch.float64) / n_a)
    weights = torch.tensor([0.0, 1.0]) if bit == 2 else weight_levels(bit, quant)
    return weights.double(), activation_levels(bit, quant).double()


def gap_to_midpoints(x, levels):
    """How close x comes to a midpoint between two levels, relative to the midpoint (float32
    rounding is relative; the power-of-two grids have midpoints as small as 2**-31)."""
    mids = (levels[1:] + levels[:-1]) / 2
    return ((x.detach().reshape(-1, 1) - mids).abs() / mids).min().item()


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("bit", [2, 3, 4, 5])
def test_forward_and_every_gradient_equal_the_authors(bit, quant):
    torch.manual_seed(bit)
    conv = QuantConv2d(8, 8, 3, padding=1, bit=bit, quant=quant)
    with torch.no_grad():
        conv.weight_alpha.fill_(1.1 if bit > 2 else 0.6)  # weights on both sides of the clip
        conv.act_alpha.fill_(1.9)
    a = (torch.rand(2, 8, 6, 6) * 3 - 0.5).requires_grad_()
    g = torch.randn(2, 8, 6, 6)
    conv(a).mul(g).sum().backward()

    w64 = conv.weight.detach().double().requires_grad_()
    a64 = a.detach().double().requires_grad_()
    wa64 = torch.tensor(conv.weight_alpha.item(), dtype=torch.float64, requires_grad=True)
    aa64 = torch.tensor(conv.act_alpha.item(), dtype=torch.float64, requires_grad=True)
    wq, aq = authors_quant(w64, a64, wa64, aa64, bit, quant)
    out64 = torch.nn.functional.conv2d(aq, wq, padding=1)
    # No weight or activation lies within float32 rounding (which differs between CPUs) of a
    # level midpoint, where the float32 layer could choose the other level than float64.
    w_grid, a_grid = level_grids(bit, quant)
    x_w = (((w64 - w64.mean()) / w64.std()) / wa64).clamp(-1, 1).abs()
    assert gap_to_midpoints(x_w, w_grid) > 1e-5 and gap_to_midpoints(
        (a64 / aa64).clamp(0, 1), a_grid) > 1e-5, "test data at a midpoint: take another seed"
    out64.mul(g.double()).sum().backward()

    assert torch.allclose(conv(a).detach().double(), out64.detach(), atol=1e-4)
    assert torch.allclose(a.grad.double(), a64.grad, atol=1e-5)
    # the normalisation's backward sums terms of size ~1/std: float32 error ~1e-7 of the largest
    scale = w64.grad.abs().max().item()
    assert torch.allclose(conv.weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-6 * scale)
    assert torch.allclose(conv.weight_alpha.grad.double(), wa64.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(conv.act_alpha.grad.double(), aa64.grad, rtol=1e-4, atol=1e-4)


def test_two_bit_alpha_gradient_is_the_closed_form_rcf():
    """x = w / alpha with alpha = 2; q = round(clamp(x, -1, 1)). Each weight's share of the alpha
    gradient is sign(x) beyond the clip and q - x inside (written out by hand); the weight
    gradient is 1 everywhere, beyond the clip too."""
    from apot.calibrated import calibrated_weight_quant
    from apot.projection import midpoints
    w = torch.tensor([-2.5, -1.2, -0.7, -0.3, 0.2, 0.6, 0.9, 1.5, 3.0])
    # x:             -1.25  -0.6  -0.35  -0.15  0.1  0.3   0.45  0.75  1.5
    expect_q = [-2.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0]
    expect_alpha_grad = [-1.0, -0.4, 0.35, 0.15, -0.1, -0.3, -0.45, 0.25, 1.0]
    levels = weight_levels(2)
    for i in range(len(w)):
        wi = w.clone().requires_grad_()
        alpha = torch.tensor(2.0, requires_grad=True)
        out = calibrated_weight_quant(wi, alpha, levels, midpoints(levels))
        assert out.tolist() == expect_q
        out[i].backward()
        assert alpha.grad.item() == pytest.approx(expect_alpha_grad[i], abs=1e-6)
        assert wi.grad.tolist() == [float(j == i) for j in range(len(w))]


@pytest.mark.parametrize("bit", [2, 3, 4])
def test_clipped_weight_gradient_above_2_bits_and_calibrated_at_2(bit):
    """With mean/std fixed aside, the gradient reaching W~ is zero outside [-alpha, alpha] for
    b > 2 and passes everywhere at b = 2."""
    from apot.calibrated import calibrated_weight_quant
    from ImageNet.quant_layer import quantize_weight
    w_norm = torch.linspace(-3, 3, 60, dtype=torch.float32).requires_grad_()  # avoids |x| == 1
    alpha = torch.tensor(1.0)
    levels = weight_levels(bit)
    quantize = calibrated_weight_quant if bit == 2 else quantize_weight
    quantize(w_norm, alpha, levels, (levels[1:] + levels[:-1]) / 2).sum().backward()
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
    from apot.checkpoint import load_weights
    missing = load_weights(model, tv.state_dict(), "torchvision", may_miss=lambda k: "alpha" in k)
    assert missing and all(k.endswith("alpha") for k in missing)
    assert torch.equal(model.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)


@pytest.mark.slow
@pytest.mark.parametrize("bit", [4, 32])
def test_train_and_evaluate_resnet18(bit, tiny_imagenet, tmp_path):
    proc = run_in_process(imagenet_main, "-a", "resnet18", "--bit", bit, "--data", tiny_imagenet,
                          "-b", "4", "--epochs", "1", "--save-dir", tmp_path / "run", *FAST,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\* Best@1 \d+\.\d\d", last_line(proc.stdout))
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,lr,train_loss") and "test_top5" in log[0] and len(log) == 2
    proc = run_in_process(imagenet_main, "-a", "resnet18", "--bit", bit, "--data", tiny_imagenet,
                          "-e", "--init", tmp_path / "run" / "model_best.pth.tar", *FAST,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\* Prec@1 \d+\.\d\d Prec@5 \d+\.\d\d", last_line(proc.stdout))


@pytest.mark.slow
def test_torchrun_two_processes_checkpoint_from_rank0_and_resume(tiny_imagenet, tmp_path):
    """Two processes write one checkpoint (rank 0), which a single process resumes."""
    common = ["-a", "resnet18", "--bit", "4", "--data", tiny_imagenet, "-b", "4", "--save-dir",
              tmp_path / "run", *FAST]
    first = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", MAIN, *common,
                            "--epochs", "1"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("* Best@1") == 1  # rank 0 alone reports
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "args.json", "checkpoint.pth.tar", "log.csv", "model_best.pth.tar"]
    second = run_in_process(imagenet_main, *common, "--epochs", "2", "--resume",
                            tmp_path / "run" / "checkpoint.pth.tar", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout
    assert torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)["epoch"] == 2
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 3


def test_missing_split_is_a_clear_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    proc = run_in_process(imagenet_main, "--data", tmp_path, *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*val not found: --data must be an ImageFolder root "
                                r"holding val/ \(and train/ to train\)")


def test_empty_class_folder_is_a_clear_error(tmp_path):
    data = make_image_folder(tmp_path / "d", empty_class=True)
    proc = run_in_process(imagenet_main, "--data", data, *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*train: .*class2")


def test_unsupported_bit_is_refused(tiny_imagenet, tmp_path):
    proc = run_in_process(imagenet_main, "--data", tiny_imagenet, "--bit", "8", *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: argument --bit: invalid choice: 8")
    assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        QuantConv2d(3, 3, 3, bit=6)


def test_unreachable_pretrained_weights_are_a_clear_error(tiny_imagenet, tmp_path):
    proc = run_in_process(imagenet_main, "--data", tiny_imagenet, "--pretrained", "torchvision",
                      "--no-download", "-b", "4", "--save-dir", tmp_path / "r", *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --pretrained torchvision needs a download")


def test_mismatched_checkpoint_is_a_clear_error(tiny_imagenet, tmp_path):
    bad = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), bad)
    proc = run_in_process(imagenet_main, "--data", tiny_imagenet, "--pretrained", bad, "-b", "4",
                      "--save-dir", tmp_path / "r", *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: checkpoint .*r34.pth does not fit this model")


def test_run_sh_applies_the_recipe_and_passes_arguments_through(tmp_path):
    args = recipe_args("resnet18", 4, tmp_path, "-b", "4", "--epochs", "1", "--no-progress",
                       env={"PRETRAINED": "/weights/resnet18_fp32.pth"})
    assert (args.arch, args.bit, args.data, args.save_dir) == ("resnet18", 4, "/imagenet",
                                                               "result/resnet18_4bit")
    assert (args.lr, args.warmup_lr, args.weight_decay) == (0.01, 0.025, 1e-4)
    assert args.warmup_iters == 2500 and args.lr_steps == [30, 60, 90]
    assert args.pretrained == "/weights/resnet18_fp32.pth"
    assert (args.batch_size, args.epochs, args.no_progress) == (4, 1, True)  # extra args win
    bad = subprocess.run(["bash", ROOT / "ImageNet" / "run.sh", "resnet50", "7", tmp_path],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "no published recipe for resnet50 at 7 bits" in bad.stderr


@pytest.mark.parametrize("init", [["--init", "result/resnet18_4bit/model_best.pth.tar"],
                                  ["--init=result/resnet18_4bit/model_best.pth.tar"]])
def test_run_sh_chained_with_init_passes_no_pretrained_weights(init, tmp_path):
    args = recipe_args("resnet18", 2, tmp_path, *init)
    assert args.init == "result/resnet18_4bit/model_best.pth.tar" and args.pretrained == ""


def test_init_and_pretrained_together_are_a_one_line_error(tiny_imagenet, tmp_path):
    proc = run_in_process(imagenet_main, "--data", tiny_imagenet, "--pretrained", "torchvision",
                          "--init", tmp_path / "x.pth.tar", "--save-dir", tmp_path / "r", *FAST,
                          cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --init .*x\.pth\.tar and --pretrained torchvision "
                                r"both name the starting weights: give one$")
    assert list(tmp_path.iterdir()) == []


def recipe_args(arch, bit, tmp_path, *extra, env=None):
    """The main.py arguments that ImageNet/run.sh passes for a recipe (and extra arguments),
    parsed by main.py's own parser."""
    from ImageNet.main import get_args_parser
    proc, calls = run_with_stand_in_python("bash", ROOT / "ImageNet" / "run.sh", arch, bit,
                                           "/imagenet", *extra, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    [argv] = calls
    return get_args_parser().parse_args(argv[1:])  # [0] is main.py


@pytest.mark.parametrize("arch, bit, start, base, wd", [
    ("resnet18", 4, 0.025, 0.01, 1e-4), ("resnet18", 2, 0.010, 0.04, 2e-5),
    ("resnet34", 2, 0.025, 0.1, 2e-5)])
def test_recipe_warm_up_and_steps(arch, bit, start, base, wd, tmp_path):
    """docs/method.md (the authors' training logs): the lr at iteration 0, at the end of
    the 2,500-iteration warm-up, and after the steps at epochs 30/60/90."""
    from ImageNet.main import lr_factor
    args = recipe_args(arch, bit, tmp_path)
    assert (args.batch_size, args.weight_decay, args.epochs) == (1024, wd, 100)
    iters = 1251  # 1,281,167 images / 1024
    lr = lambda it: args.lr * lr_factor(args, iters)(it)  # noqa: E731
    assert lr(0) == pytest.approx(start, rel=1e-12)
    assert lr(1250) == pytest.approx(start + (base - start) * 1250 / 2500, rel=1e-12)
    assert lr(2500) == pytest.approx(base, rel=1e-12)
    for epoch, factor in ((29, 1), (30, 0.1), (59, 0.1), (60, 0.01), (90, 0.001), (99, 0.001)):
        assert lr(epoch * iters) == pytest.approx(base * factor, rel=1e-12)


def test_resume_in_the_warm_up_continues_the_same_lr_sequence():
    """Interrupted at iteration 700 of a 2,500-iteration warm-up, saved and restored through the
    checkpoint dict, the schedule goes on exactly as without the interruption."""
    import argparse
    from apot.checkpoint import Progress, TrainingParts, restore_run, run_state
    from ImageNet.main import get_args_parser, make_training
    args = get_args_parser().parse_args(["--data", "x", "--lr", "0.04", "--warmup-lr", "0.01"])
    cpu = torch.device("cpu")

    def lrs(optimizer, scheduler, n):
        out = []
        for _ in range(n):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    model = torch.nn.Linear(2, 2)
    opt, sched, _ = make_training(model, args, 100, cpu)
    whole = lrs(opt, sched, 3200)
    model = torch.nn.Linear(2, 2)
    opt, sched, _ = make_training(model, args, 100, cpu)
    first = lrs(opt, sched, 700)
    state = run_state(TrainingParts(model, opt, sched, {}), Progress(7), argparse.Namespace())
    model = torch.nn.Linear(2, 2)
    opt, sched, _ = make_training(model, args, 100, cpu)
    import tempfile, os  # noqa: E401
    with tempfile.TemporaryDirectory() as d:
        torch.save(state, os.path.join(d, "c.pth"))
        restore_run(os.path.join(d, "c.pth"), TrainingParts(model, opt, sched, {}))
    assert first + lrs(opt, sched, 2500) == whole
    assert whole[0] == 0.01 and whole[2500] == 0.04 and whole[3000] == pytest.approx(0.004)


def test_loss_scale_survives_a_resume(tmp_path):
    """An --amp run's GradScaler state (loss scale, growth tracker) goes into the checkpoint and
    comes back into a new scaler. CPU runs keep the scaler off, so this uses an enabled CPU
    scaler directly, after steps that changed its scale."""
    import argparse
    from apot.checkpoint import Progress, TrainingParts, atomic_save, restore_run, run_state
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    for step in range(5):
        loss = model(torch.randn(8, 4)).sum() * (float("inf") if step == 0 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0**10 and saved["_growth_tracker"] == 1  # halved once, doubled once
    atomic_save(run_state(TrainingParts(model, opt, sched, {}, scaler), Progress(1),
                          argparse.Namespace()), tmp_path / "c.pth")
    fresh = torch.amp.GradScaler("cpu", growth_interval=3)
    restore_run(tmp_path / "c.pth", TrainingParts(torch.nn.Linear(4, 2), opt, sched, {}, fresh))
    assert fresh.state_dict() == saved


@pytest.fixture(scope="module")
def trained_run(tiny_imagenet, tmp_path_factory):
    """One epoch of a 4-bit ResNet-18 on the tiny ImageFolder: its run folder."""
    run = tmp_path_factory.mktemp("amp") / "run"
    proc = run_in_process(imagenet_main, "-a", "resnet18", "--bit", "4", "--data", tiny_imagenet,
                          "-b", "4", "--epochs", "1", "--save-dir", run, *FAST, cwd=run.parent)
    assert proc.returncode == 0, proc.stderr
    return run


BAD_SCALER_ENTRIES = [{"scale": "big"}, [1, 2], {"scale": 1.0},
                      {"scale": float("nan"), "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 0}]


@pytest.mark.parametrize("entry", BAD_SCALER_ENTRIES)
def test_corrupt_scaler_entries_are_refused(entry):
    from apot.checkpoint import check_scaler_state
    from apot.errors import UserError
    with pytest.raises(UserError, match=r"^--resume c\.pth: corrupt 'scaler' entry"):
        check_scaler_state(entry, "c.pth")
    check_scaler_state({}, "c.pth")  # saved with the scaler off: nothing to restore
    check_scaler_state(torch.amp.GradScaler("cpu").state_dict(), "c.pth")


def test_corrupt_scaler_entry_is_a_clear_error_and_nothing_is_written(trained_run, tiny_imagenet,
                                                                      tmp_path):
    ckpt = torch.load(trained_run / "checkpoint.pth.tar", weights_only=True)
    ckpt["scaler"] = BAD_SCALER_ENTRIES[0]
    run = tmp_path / "run"
    run.mkdir()
    torch.save(ckpt, run / "checkpoint.pth.tar")
    before = (run / "checkpoint.pth.tar").read_bytes()
    proc = run_in_process(
        imagenet_main, "-a", "resnet18", "--bit", "4", "--data", tiny_imagenet, "-b", "4",
        "--epochs", "2", "--save-dir", run, "--resume", run / "checkpoint.pth.tar", "--amp",
        *FAST, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --resume .*: corrupt 'scaler' entry")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pth.tar"]
    assert (run / "checkpoint.pth.tar").read_bytes() == before


def test_evaluation_reads_val_alone(trained_run, tmp_path):
    data = make_image_folder(tmp_path / "d")
    import shutil
    shutil.rmtree(data / "train")
    argv = ["-a", "resnet18", "--bit", "4", "--data", data, "-e", "--init",
            trained_run / "model_best.pth.tar", *FAST]
    proc = run_in_process(imagenet_main, *argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\* Prec@1 \d+\.\d\d Prec@5 \d+\.\d\d", last_line(proc.stdout))
    shutil.rmtree(data / "val")
    assert_one_line_error(run_in_process(imagenet_main, *argv, cwd=tmp_path),
                          r"^error: .*val not found: --data must be an ImageFolder")


@pytest.mark.parametrize("arch, bit, meta, error", [
    ("resnet34", 4, True, r"is a arch=resnet18 run, not arch=resnet34$"),
    ("resnet18", 2, True, r"is a bit=4 run, not bit=2$"),
    # without the run's record (as the authors' checkpoints): the keys and shapes tell
    ("resnet34", 4, False, r"does not fit this model \(missing layer1\.2\.bn1\.bias, "),
])
def test_evaluating_a_checkpoint_of_another_model_is_a_clear_error(arch, bit, meta, error,
                                                                   trained_run, tiny_imagenet,
                                                                   tmp_path):
    ckpt = trained_run / "model_best.pth.tar"
    if not meta:
        bare = torch.load(ckpt, weights_only=True)["state_dict"]
        ckpt = tmp_path.parent / f"bare_{tmp_path.name}.pth.tar"
        torch.save({"state_dict": bare}, ckpt)
    proc = run_in_process(imagenet_main, "-a", arch, "--bit", bit, "--data", tiny_imagenet, "-e",
                          "--init", ckpt, *FAST, cwd=tmp_path)
    assert_one_line_error(proc, rf"^error: checkpoint {re.escape(str(ckpt))} {error}")
    assert list(tmp_path.iterdir()) == []


def test_training_augmentation_depends_on_seed_epoch_and_index_only(tiny_imagenet):
    from ImageNet.data import image_folder, train_loader

    def first_batch(epoch, workers, seed=0):
        loader = train_loader(image_folder(tiny_imagenet, "train", 24), 4, workers, seed, 0, 1)
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[0]

    a = first_batch(1, 0)
    assert torch.equal(a, first_batch(1, 0))
    assert torch.equal(a, first_batch(1, 2))  # worker processes do not change the crops
    assert not torch.equal(a, first_batch(2, 0))
    assert not torch.equal(a, first_batch(1, 0, seed=1))
