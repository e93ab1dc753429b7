"""main.py --channels-last (the default) and --no-channels-last: the same model in two memory
formats. They may differ only in summation order, so they are compared in float64, where no
activation or weight lies within the two orders' rounding of a level midpoint; float32 runs of
the quantized models could legitimately send a value to the other level."""
import copy
import json
import re

import pytest
import torch
import torch.nn as nn

from apot.training import memory_format
from CIFAR.data import Normalize
from CIFAR.main import build_model, get_args_parser
from CIFAR.main import main as cifar_main
from helpers import assert_one_line_error, run_in_process

LAYOUTS = {"channels_last": [], "NCHW": ["--no-channels-last"]}


def model_args(bit, *extra):
    return get_args_parser().parse_args(["-a", "res20", "--bit", str(bit), *extra])


def layout_pair(bit, *extra):
    """{layout: (train-mode model, args)}, both holding the channels_last model's weights."""
    torch.manual_seed(0)
    built = {}
    for name, flag in LAYOUTS.items():
        args = model_args(bit, *extra, *flag)
        built[name] = (build_model(args).train(), args)
    built["NCHW"][0].load_state_dict(built["channels_last"][0].state_dict())
    return built


def forward_backward(model, args, images, target, dtype):
    x = Normalize("cifar10", "cpu", memory_format(args))(images).to(dtype)
    model = model.to(dtype)
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("bit, groups", [(32, 1), (4, 1), (3, 2), (2, 2)])
def test_both_layouts_compute_the_same_model_and_gradients(bit, groups):
    built = layout_pair(bit, "--bn-groups", str(groups))
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    target = torch.randint(0, 10, (16,), generator=g)
    results = {name: forward_backward(copy.deepcopy(model), args, images, target, torch.float64)
               for name, (model, args) in built.items()}
    (loss_a, grads_a), (loss_b, grads_b) = results.values()
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-12)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    for name in grads_a:
        scale = grads_a[name].abs().max().item()
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-9, atol=1e-12 * scale), name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_convolution_sees_the_chosen_layout(layout):
    """The flag reaches every conv's input (a model or batch left in the other format would
    make PyTorch convert, or silently run the other layout's kernels)."""
    model, args = layout_pair(4)[layout]
    want = memory_format(args)
    seen = []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for m in convs:
        m.register_forward_pre_hook(lambda m, inp: seen.append(
                (inp[0].is_contiguous(memory_format=want), m.weight.is_contiguous(
                    memory_format=want))))
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    model(Normalize("cifar10", "cpu", want)(images))
    assert len(seen) == len(convs) >= 19 and all(a and w for a, w in seen)
    # the two formats are distinguishable for these shapes: the check above can fail
    other = torch.contiguous_format if want == torch.channels_last else torch.channels_last
    assert not Normalize("cifar10", "cpu", want)(images).is_contiguous(memory_format=other)


@pytest.mark.slow
def test_the_layout_is_recorded_and_a_resume_may_not_change_it(tiny_cifar, tmp_path):
    common = ["--bit", "4", "--data", tiny_cifar, "--no-download", "-b", "16", "--no-progress",
              "--save-dir", tmp_path / "run"]
    proc = run_in_process(cifar_main, *common, "--no-channels-last", "--epochs", "1",
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "args.json").read_text())["channels_last"] is False
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["channels_last"] is False
    before = (tmp_path / "run" / "checkpoint.pth.tar").read_bytes()
    proc = run_in_process(cifar_main, *common, "--epochs", "2", "--resume",
                          tmp_path / "run" / "checkpoint.pth.tar", cwd=tmp_path)
    assert_one_line_error(
        proc, r"^error: --resume .* is a channels_last=False run, not channels_last=True$")
    assert (tmp_path / "run" / "checkpoint.pth.tar").read_bytes() == before
    proc = run_in_process(cifar_main, *common, "--no-channels-last", "--epochs", "2", "--resume",
                          tmp_path / "run" / "checkpoint.pth.tar", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert torch.load(tmp_path / "run" / "checkpoint.pth.tar", weights_only=True)["epoch"] == 2


def test_bench_times_both_layouts_of_every_model_asked_for(capsys, tmp_path):
    from CIFAR import bench
    bench.main(["--arch", "res20", "--layouts", "32", "2", "--steps", "1", "--batch", "8",
                "--bn-groups", "2", "--device", "cpu", "--summary", str(tmp_path / "s.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("res20, batch 8, --bn-groups 2")
    pattern = r"NCHW (\d+) ms, channels_last (\d+) ms: channels_last/NCHW \d+\.\d\d"
    assert [line.split(":")[0] for line in lines[-2:]] == ["FP32", "2-bit"]
    found = [re.search(pattern, line) for line in lines[-2:]]
    assert all(found)
    summary = json.loads((tmp_path / "s.json").read_text())  # the numbers printed, for programs
    assert {b: [f"{ms:.0f}" for ms in layouts.values()]
            for b, layouts in summary["layout_step_ms"].items()} == {
        "32": list(found[0].groups()), "2": list(found[1].groups())}
    assert (summary["arch"], summary["batch"], summary["bn_groups"]) == ("res20", 8, 2)


def test_bench_times_each_model_eager_and_with_compile_model(capsys, tmp_path, monkeypatch):
    """--compiled builds each model once as main.py does and once as main.py --compile-model
    does (compile_whole stands in for torch.compile here: the wiring, not the compiler, is
    under test), and is refused beside --compile-model."""
    from CIFAR import bench
    compiled = []
    monkeypatch.setattr(bench, "compile_whole", lambda model: compiled.append(model) or model)
    bench.main(["--arch", "res20", "--compiled", "4", "--steps", "1", "--batch", "8",
                "--device", "cpu", "--summary", str(tmp_path / "s.json")])
    assert len(compiled) == 1 and compiled[0].bit == 4
    line = capsys.readouterr().out.splitlines()[-1]
    found = re.fullmatch(r"4-bit: eager (\d+) ms, --compile-model (\d+) ms: "
                         r"--compile-model/eager \d+\.\d\d", line)
    assert found, line
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [f"{ms:.0f}" for ms in summary["compile_step_ms"]["4"].values()] == list(found.groups())
    with pytest.raises(SystemExit):
        bench.main(["--compiled", "4", "--compile-model", "--device", "cpu"])
    assert "leave out --compile-model" in capsys.readouterr().err


def test_bench_epoch_summary_holds_the_medians_and_projection_it_prints(capsys):
    from CIFAR.bench import report_epochs
    summary = report_epochs({32: [10.0, 2.0, 4.0], 4: [30.0, 5.0, 6.0, 9.0]}, 391, 4)
    assert summary["epochs"]["32"] == {"seconds": [10.0, 2.0, 4.0], "first": 10.0, "median": 3.0,
                                       "stage_minutes": (10 + 299 * 3) / 60}
    assert summary["epochs"]["4"]["median"] == 6.0 and summary["epoch_ratio"] == 2.0
    assert capsys.readouterr().out.splitlines()[-1] == "4-bit/FP32 epoch ratio: 2.00"
