"""CIFAR/main.py and CIFAR/run.sh end to end on a tiny CIFAR-format folder: main.py in this
process, run.sh and torchrun as subprocesses."""
import csv
import hashlib
import json
import re
import shutil
import subprocess

import pytest
import torch

from apot.projection import compilation
from CIFAR.main import main as cifar_main
from helpers import (CIFAR_DIR, OFFICIAL, ROOT, assert_one_line_error, last_line, run_in_process,
                      run_with_stand_in_python)

MAIN = ROOT / "CIFAR" / "main.py"


def train(tmp_path, data, *extra, save="run"):
    """main.py in this process with eager quantizers (compile warm-up would dominate these
    few-step runs)."""
    return run_in_process(cifar_main, "-a", "res20", "--data", data, "--no-progress",
                          "--save-dir", tmp_path / save, *extra, cwd=tmp_path)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cifar):
    """A 2-epoch 4-bit run, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("trained")
    proc = train(tmp, tiny_cifar, "--bit", "4", "--epochs", "2", "--lr", "0.04")
    assert proc.returncode == 0, proc.stderr
    return tmp / "run", proc


def test_training_writes_the_run_folder(trained):
    run, proc = trained
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"\* Prec@1 \d+\.\d\d", lines[-2])
    assert re.fullmatch(r"\* Best@1 \d+\.\d\d", lines[-1])
    # main.py trains on the GPU where there is one, and says so only when it falls back
    assert ("no GPU found: running on the CPU" in proc.stdout) == (not torch.cuda.is_available())
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert set(rows[0]) == {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                            "best_acc", "seconds"}
    args = json.load(open(run / "args.json"))
    assert args["bit"] == 4 and args["seed"] == 0 and args["lr"] == 0.04
    ckpt = torch.load(run / "checkpoint.pth.tar", weights_only=True)
    assert {"epoch", "state_dict", "best_prec", "optimizer", "scheduler"} <= set(ckpt)
    assert ckpt["epoch"] == 2
    best = torch.load(run / "model_best.pth.tar", weights_only=True)
    assert best["best_prec"] == max(float(r["test_acc"]) for r in rows)
    assert "layer1.0.conv1.weight_quant.wgt_alpha" in ckpt["state_dict"]


def test_evaluate_prints_prec_as_the_last_line(trained, tiny_cifar, tmp_path):
    run, _ = trained
    proc = run_in_process(cifar_main, "-a", "res20", "--bit", "4", "-e", "--init",
                          run / "model_best.pth.tar", "--data", tiny_cifar, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    best = torch.load(run / "model_best.pth.tar", weights_only=True)["best_prec"]
    assert last_line(proc.stdout) == f"* Prec@1 {best:.2f}"


@pytest.mark.slow
def test_resume_is_bit_identical_to_an_uninterrupted_run(trained, tiny_cifar, tmp_path):
    full, _ = trained
    first = train(tmp_path, tiny_cifar, "--bit", "4", "--epochs", "1", "--lr", "0.04")
    assert first.returncode == 0, first.stderr
    resumed = train(tmp_path, tiny_cifar, "--bit", "4", "--epochs", "2", "--lr", "0.04",
                    "--resume", tmp_path / "run" / "checkpoint.pth.tar")
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(full / "checkpoint.pth.tar", weights_only=True)
    b = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    logs = [[{k: v for k, v in row.items() if k != "seconds"}
             for row in csv.DictReader(open(folder / "log.csv"))]
            for folder in (full, tmp_path / "run")]
    assert [row["epoch"] for row in logs[1]] == ["0", "1"] and logs[0] == logs[1]
    # a finished run resumed again trains nothing and leaves its checkpoint as it was
    before = digest(tmp_path / "run" / "checkpoint.pth.tar")
    again = train(tmp_path, tiny_cifar, "--bit", "4", "--epochs", "2", "--lr", "0.04",
                  "--resume", tmp_path / "run" / "checkpoint.pth.tar")
    assert again.returncode == 0 and "has all 2 epochs: nothing to train" in again.stdout
    assert digest(tmp_path / "run" / "checkpoint.pth.tar") == before


@pytest.mark.slow
def test_run_sh_chains_all_four_stages(tiny_cifar, tmp_path):
    """run.sh's four command lines, recorded by a stand-in interpreter, then trained by main.py
    in this process in the same order: each quantized stage starts from the previous best."""
    cmd = ["bash", ROOT / "CIFAR" / "run.sh", "res20", tiny_cifar, "-id", "0", "--epochs", "1",
           "--no-progress", "--no-compile"]
    proc, calls = run_with_stand_in_python(*cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [argv[0] for argv in calls] == [str(MAIN)] * 4
    for argv in calls:
        stage = run_in_process(cifar_main, *argv[1:], cwd=tmp_path)
        assert stage.returncode == 0, stage.stderr
    stages = {b: json.load(open(tmp_path / f"result/res20_{b}bit/args.json"))
              for b in (32, 4, 3, 2)}
    assert stages[32]["init"] == "" and stages[32]["weight_decay"] == 5e-4
    for bit, src, wd in [(4, 32, 1e-4), (3, 4, 1e-4), (2, 3, 3e-5)]:
        assert stages[bit]["init"] == f"result/res20_{src}bit/model_best.pth.tar"
        assert stages[bit]["lr"] == 0.04 and stages[bit]["weight_decay"] == wd
        assert torch.load(tmp_path / f"result/res20_{bit}bit/checkpoint.pth.tar",
                          weights_only=True)["epoch"] == 1
    # restartable: a second pass resumes every stage from its checkpoint (main.py then trains
    # nothing: test_resume_is_bit_identical_to_an_uninterrupted_run)
    again, _ = run_with_stand_in_python(*cmd, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    for i, (label, bit) in enumerate([("FP32", 32), ("4-bit", 4), ("3-bit", 3), ("2-bit", 2)]):
        ckpt = f"result/res20_{bit}bit/checkpoint.pth.tar"
        assert lines[2 * i] == f"== {label} stage: continuing {ckpt}"
        assert f"--resume {ckpt}" in lines[2 * i + 1]


def test_run_sh_leaves_the_reference_runs_alone_unless_named(tiny_cifar, tmp_path):
    """A fresh clone holds our reference runs in result/reference: the user's chain starts its
    FP32 stage from scratch in result/ and never reads or writes them; --runs continues them."""
    ref = tmp_path / "result" / "reference" / "res20_32bit"
    ref.mkdir(parents=True)
    (ref / "checkpoint.pth.tar").write_bytes(b"our reference run")
    cmd = ["bash", ROOT / "CIFAR" / "run.sh", "res20", tiny_cifar, "--epochs", "1",
           "--no-progress", "--no-compile"]
    proc, _ = run_with_stand_in_python(*cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "== FP32 stage: starting in result/res20_32bit"
    assert "--save-dir result/res20_32bit" in lines[1] and "--resume" not in lines[1]
    assert "reference" not in proc.stdout
    proc, _ = run_with_stand_in_python(*cmd[:4], "--runs", "result/reference", *cmd[4:],
                                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "== FP32 stage: continuing result/reference/res20_32bit/checkpoint.pth.tar"
    assert "--resume result/reference/res20_32bit/checkpoint.pth.tar" in lines[1]
    assert "--runs" not in lines[1] and lines[1].endswith("--epochs 1 --no-progress --no-compile")
    assert "--init result/reference/res20_32bit/model_best.pth.tar" in lines[3]
    assert (ref / "checkpoint.pth.tar").read_bytes() == b"our reference run"


def test_unsupported_bit_is_refused(tiny_cifar, tmp_path):
    proc = train(tmp_path, tiny_cifar, "--bit", "8")
    assert_one_line_error(proc, r"^error: argument --bit: invalid choice: 8")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_missing_data_without_network(tmp_path):
    proc = train(tmp_path, tmp_path / "nowhere", "--bit", "4", "--no-download")
    assert_one_line_error(proc, r"^error: cifar10 not found: expected the folder "
                                r".*nowhere/cifar-10-batches-py")


@pytest.fixture
def run_with_checkpoint(trained, tmp_path):
    """A copy of the trained run folder, and the digest of its checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    return run, digest(run / "checkpoint.pth.tar")


def test_corrupt_checkpoint_is_a_clear_error_and_loses_nothing(run_with_checkpoint, tiny_cifar,
                                                               tmp_path):
    run, before = run_with_checkpoint
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"\x80\x02 definitely not a checkpoint" * 10)
    for extra in (["--resume", corrupt], ["--init", corrupt, "--save-dir", tmp_path / "new"],
                  ["-e", "--init", corrupt]):
        proc = train(tmp_path, tiny_cifar, "--bit", "4", "--epochs", "3", *extra)
        assert_one_line_error(proc, r"^error: cannot read checkpoint .*corrupt")
    assert digest(run / "checkpoint.pth.tar") == before


def test_wrong_architecture_checkpoint_is_a_clear_error(run_with_checkpoint, tiny_cifar, tmp_path):
    run, before = run_with_checkpoint
    res32 = tmp_path / "res32.pth.tar"
    from CIFAR.resnet import resnet32_cifar
    torch.save({"state_dict": resnet32_cifar(bit=4).state_dict()}, res32)
    for extra in (["--init", res32, "--save-dir", tmp_path / "new"], ["-e", "--init", res32]):
        proc = train(tmp_path, tiny_cifar, "--bit", "4", *extra)
        assert_one_line_error(proc, r"^error: checkpoint .* does not fit this model "
                                    r"\(unexpected layer1\.3")
    proc = train(tmp_path, tiny_cifar, "-a", "res32", "--bit", "4",
                 "--resume", run / "checkpoint.pth.tar")
    assert_one_line_error(proc, r"^error: --resume .* is a arch=res20 run")
    assert digest(run / "checkpoint.pth.tar") == before


def test_evaluating_a_checkpoint_of_another_bit_width_is_an_error(trained, tiny_cifar, tmp_path):
    fp32 = tmp_path / "fp32.pth.tar"
    from CIFAR.resnet import resnet20_cifar
    torch.save({"state_dict": resnet20_cifar(bit=32).state_dict()}, fp32)
    proc = train(tmp_path, tiny_cifar, "--bit", "4", "-e", "--init", fp32)
    assert_one_line_error(proc, r"missing layer1\.0\.conv1\.act_alpha")
    # ... while --init from FP32 to start a 4-bit run is the recipe
    proc = train(tmp_path, tiny_cifar, "--bit", "4", "--epochs", "1", "--init", fp32)
    assert proc.returncode == 0 and "alphas start at their defaults" in proc.stdout


def test_evaluating_our_checkpoint_at_another_bit_width_is_an_error(trained, tiny_cifar,
                                                                     tmp_path):
    """A 4-bit and a 3-bit ResNet-20 have the same keys and shapes: our checkpoints record
    their bit-width, and -e at another one is refused."""
    best = trained[0] / "model_best.pth.tar"
    assert torch.load(best, weights_only=True)["bit"] == 4
    proc = train(tmp_path, tiny_cifar, "--bit", "3", "-e", "--init", best)
    assert_one_line_error(proc, r"^error: checkpoint .*model_best\.pth\.tar is a bit=4 run, not "
                                r"bit=3$")


def test_constant_weights_are_a_clear_error_not_nan(trained, tiny_cifar, tmp_path):
    """A quantized conv whose weights are all equal has std 0, and the quantizer divides by it."""
    ckpt = torch.load(trained[0] / "model_best.pth.tar", weights_only=True)
    ckpt["state_dict"]["layer2.1.conv2.weight"].fill_(0.5)
    torch.save(ckpt, tmp_path / "constant.pth.tar")
    for extra in (["-e", "--init", tmp_path / "constant.pth.tar"],
                  ["--epochs", "1", "--init", tmp_path / "constant.pth.tar"]):
        proc = train(tmp_path, tiny_cifar, "--bit", "4", *extra)
        assert_one_line_error(proc, r"^error: checkpoint .*constant\.pth\.tar holds constant "
                                    r"weights \(std 0\) in layer2\.1\.conv2: the weight "
                                    r"quantizer divides by their std$")
    assert not (tmp_path / "run").exists()
    from ImageNet.resnet import ARCHS
    from apot.checkpoint import constant_quantized_weights
    model = ARCHS["resnet18"](bit=2, num_classes=3)
    torch.nn.init.zeros_(model.layer4[1].conv1.weight)
    torch.nn.init.zeros_(model.conv1.weight)  # the 8-bit first conv does not normalise
    assert constant_quantized_weights(model) == ["layer4.1.conv1"]


def test_an_existing_run_is_not_overwritten(run_with_checkpoint, tiny_cifar, tmp_path):
    run, before = run_with_checkpoint
    proc = train(tmp_path, tiny_cifar, "--bit", "4", "--epochs", "1")
    assert_one_line_error(proc, r"already holds a run: continue it with --resume")
    assert digest(run / "checkpoint.pth.tar") == before


@pytest.fixture
def main_in_process(monkeypatch, tmp_path):
    """CIFAR.main.main, run in this process from tmp_path."""
    import CIFAR.main as main_mod
    monkeypatch.chdir(tmp_path)
    return main_mod


def test_nan_loss_stops_with_an_error_and_keeps_the_checkpoint(run_with_checkpoint,
                                                               main_in_process, tiny_cifar,
                                                               monkeypatch, capsys):
    run, before = run_with_checkpoint

    class NanLoss(torch.nn.CrossEntropyLoss):
        def forward(self, output, target):
            return super().forward(output, target) * float("nan")

    monkeypatch.setattr(main_in_process.nn, "CrossEntropyLoss", NanLoss)
    with pytest.raises(SystemExit) as exit_info:
        main_in_process.main(["-a", "res20", "--bit", "4", "--epochs", "3", "--data",
                              str(tiny_cifar), "--no-progress", "--save-dir", str(run),
                              "--resume", str(run / "checkpoint.pth.tar")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert re.search(r"^error: loss is nan at epoch 2, steps 0-0: training diverged",
                     last_line(err))
    assert digest(run / "checkpoint.pth.tar") == before


def test_nan_check_stops_within_ten_steps_of_the_first_nan(main_in_process, tiny_cifar,
                                                           tmp_path, monkeypatch, capsys):
    """Losses stay on the device and are read every NAN_CHECK_EVERY (10) steps: a loss that is
    NaN from the first of 16 steps stops the run after the 10th, before any checkpoint."""
    calls = []

    class NanLoss(torch.nn.CrossEntropyLoss):
        def forward(self, output, target):
            calls.append(len(target))
            return super().forward(output, target) * float("nan")

    monkeypatch.setattr(main_in_process.nn, "CrossEntropyLoss", NanLoss)
    with pytest.raises(SystemExit):
        main_in_process.main(["-a", "res20", "--bit", "4", "--epochs", "1", "-b", "4", "--data",
                              str(tiny_cifar), "--no-progress", "--save-dir",
                              str(tmp_path / "run")])
    assert re.search(r"^error: loss is nan at epoch 0, steps 0-9: training diverged",
                     last_line(capsys.readouterr().err))
    assert calls == [4] * 10
    assert not (tmp_path / "run" / "checkpoint.pth.tar").exists()


@pytest.mark.slow
def test_compile_model_trains_as_the_uncompiled_model(main_in_process, tiny_cifar, tmp_path,
                                                      monkeypatch):
    """--compile-model traces the whole model, custom autograd Functions included, into one
    graph, without a break, also with the quantizers' own compilation on (as users run it).
    Inductor's codegen is too slow on 2 CPU cores for a test, so the graph runs with the
    aot_eager backend, which executes the traced forward and backward op by op. At 2 bits the
    same autograd Functions run as at 4 (the weights' is the calibrated one at every bit-width),
    with 3 activation midpoints instead of 15 to trace per layer."""
    recipe = ["--bit", "2", "--epochs", "2", "--lr", "0.04"]
    eager_run = train(tmp_path, tiny_cifar, *recipe, save="eager")
    assert eager_run.returncode == 0, eager_run.stderr
    from torch._dynamo.utils import counters
    counters.clear()
    compiled = []

    def compile_aot_eager(model):
        compiled.append(model)
        return torch.compile(model, backend="aot_eager")

    monkeypatch.setattr(main_in_process, "compile_whole", compile_aot_eager)
    with compilation(True):
        main_in_process.main(["-a", "res20", *recipe, "--data", str(tiny_cifar),
                              "--no-progress", "--compile-model", "--save-dir",
                              str(tmp_path / "run")])
    assert len(compiled) == 1 and not counters["graph_break"], dict(counters["graph_break"])
    ours = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    eager = torch.load(tmp_path / "eager" / "checkpoint.pth.tar", weights_only=True)["state_dict"]
    assert ours.keys() == eager.keys()  # the bare model's keys, no _orig_mod. prefix
    for k in eager:
        assert torch.equal(ours[k], eager[k]), k


def test_compile_model_refuses_several_processes(main_in_process, tiny_cifar, tmp_path,
                                                 monkeypatch, capsys):
    import apot.devices
    monkeypatch.setattr(apot.devices, "init_distributed", lambda: (0, 2, 0))
    with pytest.raises(SystemExit) as exit_info:
        main_in_process.main(["--bit", "4", "--data", str(tiny_cifar), "--compile-model",
                              "--save-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    assert re.search(r"^error: --compile-model trains on one device", capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_torchrun_two_processes_train_with_ddp(tiny_cifar, tmp_path):
    proc = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", MAIN, "-a", "res20", "--bit", "4",
         "--epochs", "1", "--data", tiny_cifar, "--no-progress", "--no-compile", "--save-dir",
         tmp_path / "ddp"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("* Best@1") == 1  # only rank 0 reports and saves
    assert torch.load(tmp_path / "ddp" / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1


@pytest.mark.slow
@pytest.mark.needs_data
@pytest.mark.parametrize("bit", [32, 4, 3, 2])
def test_authors_checkpoints_reproduce_their_accuracy(bit, tmp_path):
    """Acceptance 1: our quantizer is the published one (as users run it: compiled). The
    expected top-1 is the one the authors stored in the checkpoint (best_prec)."""
    checkpoint = OFFICIAL / f"res20_{bit}bit.pth.tar"
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["best_prec"]
    proc = run_in_process(cifar_main, "-a", "res20", "--bit", bit, "-e", "--init", checkpoint,
                          "--data", CIFAR_DIR, "--no-progress", cwd=tmp_path, compiled=True)
    assert proc.returncode == 0, proc.stderr
    prec = float(re.fullmatch(r"\* Prec@1 (\d+\.\d\d)", last_line(proc.stdout)).group(1))
    assert abs(prec - stored) <= 0.10 + 1e-9, prec


def test_parameter_groups_and_schedules_follow_the_recipe():
    from CIFAR.main import get_args_parser, make_optimizer, make_scheduler
    from CIFAR.resnet import resnet20_cifar
    args = get_args_parser().parse_args(["--bit", "4", "--lr", "0.04", "--wd", "3e-5"])
    model = resnet20_cifar(bit=4)
    opt = make_optimizer(model, args)
    n_quant = sum(1 for n, _ in model.named_parameters() if n.endswith("act_alpha"))
    assert n_quant == 20 and [len(g["params"]) for g in opt.param_groups][1:] == [20, 20]
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        (0.04, 3e-5), (0.1, 1e-4), (0.02, 1e-4)]
    assert opt.param_groups[0]["momentum"] == 0.9
    sched = make_scheduler(opt, args)
    lrs = []
    for _ in range(226):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()  # no gradients: changes nothing, but a schedule steps after its optimizer
        sched.step()
    assert lrs[149] == [0.04, 0.1, 0.02]
    assert lrs[150] == pytest.approx([0.004, 0.01, 0.002])
    assert lrs[225] == pytest.approx([0.0004, 0.001, 0.0002])

    args = get_args_parser().parse_args(["--bit", "32", "--lr-schedule", "cosine", "--epochs", "4"])
    opt = make_optimizer(resnet20_cifar(bit=32), args)
    assert len(opt.param_groups) == 1  # no alphas at 32 bits
    sched = make_scheduler(opt, args)
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
