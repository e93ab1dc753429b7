"""--bn-groups K against an independent model of nn.DataParallel over K devices: fresh replicas
every step, each fed its torch.chunk slice, the loss over the gathered outputs, gradients
summed, running statistics from the first replica."""
import copy

import pytest
import torch
import torch.nn as nn

from apot.bngroups import split_batchnorm
from CIFAR.main import main as cifar_main
from CIFAR.resnet import ARCHS
from helpers import assert_one_line_error, run_in_process


def dataparallel_step(model, x, y, groups):
    """One forward and backward as DataParallel does it; returns the loss. model's gradients
    are set to the replicas' sum and its buffers to the first replica's."""
    replicas = [copy.deepcopy(model) for _ in x.chunk(groups)]
    out = torch.cat([r(s) for r, s in zip(replicas, x.chunk(groups))])
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    params = [dict(r.named_parameters()) for r in replicas]
    for name, p in model.named_parameters():
        p.grad = sum(rp[name].grad for rp in params)
    model.load_state_dict(replicas[0].state_dict())  # the first replica's running statistics
    return loss


def gradients(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_gradients_equal(ours, ref, what):
    assert ours.keys() == ref.keys(), what
    for name, grad in ours.items():
        scale = ref[name].abs().max().item()
        assert torch.allclose(grad, ref[name], rtol=1e-9, atol=1e-12 * scale), (what, name)


@pytest.mark.slow
@pytest.mark.parametrize("batch, groups", [(12, 2), (26, 3)])  # torch.chunk: 6+6, 9+9+8
def test_grouped_batchnorm_equals_dataparallel_replicas(batch, groups):
    """One step at a time from identical state, in float64: the reference trains on (so later
    steps start from moved weights, alphas and running statistics), and before every step the
    grouped model is given its parameters and buffers. The two sum in different orders, so
    they agree to rounding; in float64 that rounding sends no 3-bit activation to another
    level, as float32 can on some CPUs."""
    torch.manual_seed(0)
    model = ARCHS["res20"](bit=3).double().train()
    ours = split_batchnorm(copy.deepcopy(model), groups)
    whole = copy.deepcopy(model)  # plain BatchNorm over the whole batch, at the first step
    opt_ref = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        ours.load_state_dict(model.state_dict())
        x = torch.randn(batch, 3, 32, 32, dtype=torch.float64)
        y = torch.randint(0, 10, (batch,))
        ref_loss = dataparallel_step(model, x, y, groups)
        loss = nn.functional.cross_entropy(ours(x), y)
        loss.backward()
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12), step
        ref_grads = gradients(model)
        assert_gradients_equal(gradients(ours), ref_grads, step)
        ref_state = model.state_dict()
        for name, buf in ours.state_dict().items():
            assert torch.allclose(buf, ref_state[name], rtol=1e-12, atol=1e-15), (step, name)
        if step == 0:  # the comparison can tell: whole-batch statistics give other gradients
            nn.functional.cross_entropy(whole(x), y).backward()
            differ = {name for name, g in gradients(whole).items()
                      if not torch.allclose(g, ref_grads[name], rtol=1e-6, atol=0)}
            assert {"layer1.0.conv1.act_alpha", "layer3.2.conv2.weight_quant.wgt_alpha",
                    "layer2.1.bn1.weight", "fc.weight"} <= differ
        opt_ref.step()
        opt_ref.zero_grad()
        ours.zero_grad()


def test_one_group_is_plain_batchnorm_and_evaluation_is_unchanged():
    torch.manual_seed(0)
    model = ARCHS["res20"](bit=32)
    assert split_batchnorm(model, 1) is model
    assert all(type(m) is nn.BatchNorm2d for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    grouped = split_batchnorm(copy.deepcopy(model), 2).eval()
    x = torch.randn(6, 3, 32, 32)
    assert torch.equal(grouped(x), model.eval()(x))
    assert grouped.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("groups", ["0", "17"])
def test_bad_group_counts_are_one_line_errors(groups, tiny_cifar, tmp_path):
    proc = run_in_process(cifar_main, "--bit", "4", "--data", tiny_cifar, "--no-download", "-b",
                          "16", "--bn-groups", groups, "--epochs", "1", "--save-dir",
                          tmp_path / "run", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, rf"^error: --bn-groups {groups}: must be between 1 and the "
                                r"per-process batch \(16\)$")
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_another_group_count(tiny_cifar, tmp_path):
    common = ["--bit", "4", "--data", tiny_cifar, "--no-download", "-b", "16", "--no-progress",
              "--save-dir", tmp_path / "run"]
    proc = run_in_process(cifar_main, *common, "--bn-groups", "2", "--epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["bn_groups"] == 2 and ckpt["args"]["bn_groups"] == 2
    before = (tmp_path / "run" / "checkpoint.pth.tar").read_bytes()
    proc = run_in_process(cifar_main, *common, "--epochs", "2", "--resume",
                          tmp_path / "run" / "checkpoint.pth.tar", cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --resume .* is a bn_groups=2 run, not bn_groups=1$")
    assert (tmp_path / "run" / "checkpoint.pth.tar").read_bytes() == before


def test_imagenet_models_take_the_same_option():
    from apot.bngroups import GroupBatchNorm2d
    from ImageNet.main import build_model, get_args_parser
    args = get_args_parser().parse_args(["--data", "x", "--bit", "4", "--bn-groups", "2"])
    norms = [m for m in build_model(args, 10).modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is GroupBatchNorm2d and m.groups == 2 for m in norms)
