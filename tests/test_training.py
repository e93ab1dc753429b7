"""The helpers both dataset folders share: arithmetic set-up, command line, run files."""
import os

import pytest
import torch

from apot.devices import set_float32_arithmetic
from helpers import run_in_process

NEW_API = hasattr(torch.backends.cudnn, "conv")


FLAGS = ([(torch.backends.cudnn.conv, "fp32_precision"),
          (torch.backends.cudnn.rnn, "fp32_precision"),
          (torch.backends.cuda.matmul, "fp32_precision")] if NEW_API else
         [(torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")])


@pytest.fixture
def restore_precision():
    """Put back whatever flags set_float32_arithmetic changes, new API or legacy one."""
    saved = [getattr(owner, name) for owner, name in FLAGS]
    yield
    for (owner, name), value in zip(FLAGS, saved):
        setattr(owner, name, value)


def precisions():
    if NEW_API:
        return (torch.backends.cudnn.conv.fp32_precision,
                torch.backends.cuda.matmul.fp32_precision)
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_float32_arithmetic_is_ieee_unless_tf32_is_asked_for(restore_precision):
    # PyTorch lets cuDNN convolutions use TF32 by default: IEEE must be set, from either state
    ieee, tf32 = (("ieee", "ieee"), ("tf32", "tf32")) if NEW_API else ((False, False), (True, True))
    assert set_float32_arithmetic(False) == "IEEE FP32" and precisions() == ieee
    assert set_float32_arithmetic(True) == "TF32" and precisions() == tf32
    assert set_float32_arithmetic(False) == "IEEE FP32" and precisions() == ieee


@pytest.mark.cuda
def test_gpu_convolutions_are_ieee_fp32_unless_tf32(restore_precision):
    # TF32 keeps 10 mantissa bits: about 1e-3 relative error, which flips quantization codes
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 64, 16, 16, generator=g), torch.randn(64, 64, 3, 3, generator=g)
    exact = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)

    def rel_err():
        out = torch.nn.functional.conv2d(x.cuda(), w.cuda(), padding=1).cpu().double()
        return ((out - exact).abs().max() / exact.abs().max()).item()

    set_float32_arithmetic(False)
    assert rel_err() < 1e-5
    set_float32_arithmetic(True)
    if torch.cuda.get_device_capability()[0] >= 8:  # TF32 exists from Ampere on
        assert rel_err() > 1e-5


@pytest.mark.parametrize("argv, message", [
    (["-b", "0"], "argument -b/--batch-size: must be a positive integer, got 0"),
    (["--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
    (["--lr", "-0.1"], "argument --lr/--learning-rate: must be a positive number, got -0.1"),
    (["--lr", "nan"], "argument --lr/--learning-rate: must be a positive number, got nan"),
    (["--wd", "x"], "argument --wd/--weight-decay: must be a non-negative number, got 'x'"),
    (["--threads", "-1"], "argument --threads: must be a non-negative integer, got -1"),
    (["--alpha-floor", "-0.5"], "argument --alpha-floor: must be a non-negative number, got -0.5")])
def test_numeric_arguments_are_checked_where_they_are_parsed(argv, message, tmp_path):
    from CIFAR.main import main
    proc = run_in_process(main, *argv, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {message} (see ") and len(proc.stderr.splitlines()) == 1


def cifar_training(floor):
    from CIFAR.main import get_args_parser, make_optimizer
    from CIFAR.resnet import resnet20_cifar
    model = resnet20_cifar(bit=4)
    args = get_args_parser().parse_args(["--alpha-floor", str(floor)])
    return model, make_optimizer(model, args)


def imagenet_training(floor):
    from ImageNet.main import get_args_parser, make_training
    from ImageNet.resnet import resnet18
    model = resnet18(bit=4)
    args = get_args_parser().parse_args(["--data", "x", "--alpha-floor", str(floor)])
    return model, make_training(model, args, 100, torch.device("cpu"))[0]


@pytest.mark.parametrize("training", [cifar_training, imagenet_training])
def test_alpha_floor_raises_the_alphas_below_it_and_changes_nothing_else(training):
    """One SGD step from the same state and gradients, with --alpha-floor 0.5 and without (0,
    the authors' arithmetic): the alphas the plain step leaves below 0.5 (here the ones set to
    -0.2 and 0.1, both kinds) are exactly 0.5, and every other tensor is bit-identical."""
    def step(floor):
        torch.manual_seed(0)
        model, optimizer = training(floor)
        alphas = [p for name, p in model.named_parameters() if name.endswith("alpha")]
        with torch.no_grad():
            alphas[0].fill_(-0.2)  # the first layer's activation alpha
            alphas[1].fill_(0.1)   # its weight alpha
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.grad = 0.01 * torch.randn(p.shape, generator=g)
        optimizer.step()
        return dict(model.named_parameters())

    plain, held = step(0), step(0.5)
    raised = [name for name, p in plain.items() if name.endswith("alpha") and p.item() < 0.5]
    assert len({n.rsplit(".", 1)[1] for n in raised}) == 2  # activation and weight alphas
    assert plain[raised[0]].item() < 0  # without the floor the alpha goes through zero
    for name, p in held.items():
        assert torch.equal(p, torch.full_like(p, 0.5) if name in raised else plain[name]), name


def test_imagenet_numeric_arguments_too(tmp_path):
    from ImageNet.main import main
    proc = run_in_process(main, "--data", "x", "--warmup-iters", "-5", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(
        "error: argument --warmup-iters: must be a non-negative integer, got -5 (see ")


def test_command_line_catches_only_the_projects_input_errors(capsys):
    from apot.cli import ArgumentParser, cli_main
    from apot.errors import UnsupportedValue

    def fail(error):
        def run(args):
            raise error
        return run

    with pytest.raises(SystemExit) as exit_info:
        cli_main(ArgumentParser(), fail(UnsupportedValue("unsupported bit-width 7")), [])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: unsupported bit-width 7\n"
    for error in (ValueError("a bug"), ZeroDivisionError("a bug"), KeyError("a bug")):
        with pytest.raises(type(error)):  # shown with its traceback, not as an input error
            cli_main(ArgumentParser(), fail(error), [])
    assert isinstance(UnsupportedValue("x"), ValueError)  # library callers may catch ValueError


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    import os
    from apot.checkpoint import atomic_write
    before = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
        with open(tmp_path / "b.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(before)
    assert (tmp_path / "a.bin").read_bytes() == b"x"
    assert oct((tmp_path / "a.bin").stat().st_mode & 0o777) == oct(0o640)
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_an_interrupted_atomic_write_keeps_the_previous_file_and_leaves_nothing(tmp_path):
    from apot.checkpoint import atomic_write
    (tmp_path / "log.csv").write_bytes(b"old\r\n")

    def crash(f):
        f.write("new, half written")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "log.csv", crash, text=True)
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]
    assert (tmp_path / "log.csv").read_bytes() == b"old\r\n"


def test_log_and_args_files_are_written_byte_for_byte(tmp_path):
    """The formats the committed runs have: csv rows end in CRLF (csv's own line end, which text
    mode must not translate), args.json is sorted, indented by 2 and ends in a newline; the JSON
    summaries are indented and end the same way."""
    import argparse
    from apot.runfolder import write_args, write_log
    write_log(str(tmp_path / "log.csv"), [dict(epoch=0, lr=0.04), dict(epoch=1, lr=0.004)])
    assert (tmp_path / "log.csv").read_bytes() == b"epoch,lr\r\n0,0.04\r\n1,0.004\r\n"
    write_args(str(tmp_path / "args.json"), argparse.Namespace(lr=0.04, arch="res20"))
    assert (tmp_path / "args.json").read_bytes() == b'{\n  "arch": "res20",\n  "lr": 0.04\n}\n'
    from apot.checkpoint import write_json  # the summaries keep the order they were made in
    write_json(tmp_path / "s.json", {"lr": 0.04, "arch": ["res20"]})
    assert (tmp_path / "s.json").read_bytes() == (b'{\n  "lr": 0.04,\n  "arch": [\n    "res20"\n'
                                                  b'  ]\n}\n')


@pytest.mark.parametrize("variant", ["CIFAR", "ImageNet"])
def test_both_mains_share_one_set_of_flags_and_one_run_folder_default(variant):
    """Every flag of the shared base means the same in both main.py files, and the run folder's
    default is resolved once the flags are parsed, before anything reads args."""
    import importlib
    from apot.cli import training_parser
    parser = importlib.import_module(f"{variant}.main").get_args_parser()
    flags = {s: a.dest for a in parser._actions for s in a.option_strings}
    base = {s: a.dest for a in training_parser("", {})._actions for s in a.option_strings}
    assert base.items() <= flags.items()
    args = parser.parse_args(["--data", "d", "--bit", "3", "-b", "8"])
    assert args.save_dir == os.path.join("result", f"{args.arch}_3bit")
    assert parser.parse_args(["--data", "d", "--save-dir", "x"]).save_dir == "x"


def test_bit_width_checks_say_what_a_model_and_a_quantized_layer_take():
    from apot.errors import UnsupportedValue
    from apot.levels import SUPPORTED_BITS, check_model_bit, check_quantized_bit
    for bit in SUPPORTED_BITS:
        check_model_bit(bit)
        check_quantized_bit(bit)
    check_model_bit(32)
    for bad in (1, 6, 8, 16, "4", 4.5):
        with pytest.raises(UnsupportedValue, match="models take bit in"):
            check_model_bit(bad)
    for bad in (1, 6, 32, "4"):
        with pytest.raises(UnsupportedValue, match="quantized layers take bit in"):
            check_quantized_bit(bad)


def test_interleaved_medians_time_every_call_in_turn_after_the_warm_up():
    from apot.timing import interleaved_medians
    calls = []
    medians = interleaved_medians({k: (lambda k=k: calls.append(k)) for k in "ab"}, rounds=3,
                                  warmup=2)
    assert calls == list("ab" * 5) and sorted(medians) == ["a", "b"]
    assert all(t >= 0 for t in medians.values())
