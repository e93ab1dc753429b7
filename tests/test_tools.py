"""The reporting tools (tables, figures, level usage, export checks) on small made-up runs, and
the repository's own layout: the README's module table, result/ holding data only, the
reference numbers typed once."""
import os
import re
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, assert_one_line_error, run_in_process


def png_size(path):
    """(width, height) from a PNG file's header, which must be one."""
    import struct
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_curves_picks_up_every_stage(tmp_path):
    from tools.plot_curves import main
    for bit, n in ((32, 5), (4, 3)):
        run = tmp_path / f"res20_{bit}bit"
        run.mkdir()
        rows = "\n".join(f"{e},0.1,1.0,50.0,1.0,{40 + e},{40 + e},1.0" for e in range(n))
        (run / "log.csv").write_text("epoch,lr,train_loss,train_acc,test_loss,test_acc,best_acc,"
                                     "seconds\n" + rows + "\n")
    proc = run_in_process(main, "--results", tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "FP32 5 epochs, 4-bit 3 epochs" in proc.stdout
    assert png_size(tmp_path / "res20_curves.png") == (1440, 540)  # 12 x 4.5 inches at 120 dpi


def test_plot_curves_zooms_on_the_last_lr_phase_of_the_stage_length(tmp_path):
    from tools.plot_curves import plot
    from tools.runs import find_runs
    write_logs(tmp_path, {32: [(90.0 + e / 10, 1) for e in range(300)], 4: [(89.0, 1)] * 5})
    runs = find_runs(tmp_path, "res20")
    zoom = plot(runs, "res20", tmp_path / "a.png", epochs=300).axes[1]
    assert zoom.get_xlim() == (225, 299) and zoom.get_title() == "last lr phase, epochs 225-299"
    assert [tuple(line.get_xdata()[[0, -1]]) for line in zoom.lines] == [(225, 299)]  # FP32 only
    # a 5-epoch smoke chain never reaches a milestone: its whole run is the last phase
    zoom = plot(runs, "res20", tmp_path / "b.png", epochs=5).axes[1]
    assert zoom.get_xlim() == (0, 4) and zoom.get_title() == "last lr phase, epochs 0-4"
    assert [tuple(line.get_xdata()[[0, -1]]) for line in zoom.lines] == [(0, 4), (0, 4)]


def write_logs(folder, logs, arch="res20"):
    """folder/<arch>_<bit>bit/log.csv for each {bit: [(test accuracy, seconds) per epoch]}."""
    for bit, rows in logs.items():
        run = folder / f"{arch}_{bit}bit"
        run.mkdir(parents=True)
        body = "".join(f"{e},0.1,1.0,50.0,1.0,{acc},0,{sec}\n" for e, (acc, sec) in enumerate(rows))
        (run / "log.csv").write_text("epoch,lr,train_loss,train_acc,test_loss,test_acc,best_acc,"
                                     "seconds\n" + body)


def test_results_table_is_computed_from_the_logs(tmp_path):
    from tools.results_table import last_phase_spread, table
    from tools.runs import find_runs
    write_logs(tmp_path, {32: [(90.0, 60), (91.5, 70), (91.2, 80)],
                          4: [(91.0, 100), (91.4, 90), (91.4, 110)], 3: [(88.0, 100)]})
    lines = table(find_runs(tmp_path, "res20"), epochs=3, start=1).splitlines()
    # last phase = epochs 1-2: FP32 91.5, 91.2 (mean 91.35, sample sd 0.212); 4-bit 91.4, 91.4
    assert lines[2] == ("| FP32 | 3/3 | 91.50 (1) | 91.20 | 91.35 (0.21) |  |  | 70 | 91.6 | "
                        "92.96 | 92.90 |")
    # best at its first epoch (model_best is replaced only on a strictly higher accuracy);
    # drops 91.50 - 91.40 and 91.35 - 91.40; the paper's 91.6 - 92.3
    assert lines[3] == ("| 4-bit | 3/3 | 91.40 (1) | 91.40 | 91.40 (0.00) | +0.10 | -0.05 | 100 | "
                        "92.3 (-0.7) | 92.45 | 92.56 |")
    assert lines[4] == ("| 3-bit | 1/3 | 88.00 (0) | not finished |  |  |  | 100 | 92.2 (-0.6) | "
                        "92.49 | 92.53 |")
    assert lines[5] == "| 2-bit | not run yet |  |  |  |  |  |  | 91.0 (+0.6) | 90.96 | 91.02 |"
    # finished stages only; epochs 1-2: FP32 91.5, 91.2 (sample sd 0.212), 4-bit 91.4, 91.4
    from tools.results_table import main
    proc = run_in_process(main, "--results", tmp_path, "--epochs", "3", "--finished", cwd=tmp_path)
    assert proc.stdout == "32 4\n"  # what the scripts under result/ take as finished models
    assert last_phase_spread(find_runs(tmp_path, "res20"), epochs=3, start=1).splitlines() == [
        "FP32, epochs 1-2: test accuracy mean 91.35, sd 0.21, min 91.20, max 91.50",
        "4-bit, epochs 1-2: test accuracy mean 91.40, sd 0.00, min 91.40, max 91.40"]


def test_gaps_compare_each_finished_stage_with_its_mean_and_the_references(tmp_path):
    from tools.results_table import gaps
    from tools.runs import find_runs
    # last phase = epochs 1-3, three values m - d, m, m + d: mean m, sample sd d
    write_logs(tmp_path, {32: [(90.0, 1), (92.6, 1), (92.7, 1), (92.8, 1)],
                          4: [(91.0, 1), (92.35, 1), (92.6, 1), (92.85, 1)], 3: [(88.0, 1)]})
    runs = find_runs(tmp_path, "res20")
    assert gaps(runs, epochs=4, start=1).splitlines() == [
        "FP32: best 92.80, last-phase mean 92.70 (sd 0.10): best - mean +0.10 (+1.0 sd)",
        "FP32: best - reference: the paper 91.6 +1.20 (+12.0 sd), the authors' README 92.96 "
        "-0.16 (-1.6 sd), the rerun 92.90 -0.10 (-1.0 sd)",
        "4-bit: best 92.85, last-phase mean 92.60 (sd 0.25): best - mean +0.25 (+1.0 sd)",
        "4-bit: best - reference: the paper 92.3 +0.55 (+2.2 sd), the authors' README 92.45 "
        "+0.40 (+1.6 sd), the rerun 92.56 +0.29 (+1.2 sd)",
        # drops: ours 92.80 - 92.85; the paper's 91.6 - 92.3, the README's 92.96 - 92.45, ...
        "4-bit: drop of the best from FP32: ours -0.05, the paper's -0.70, the authors' README's "
        "+0.51, the rerun's +0.34",
        # e.g. the README: +0.51 - (-0.05) = (92.96 - 92.80) + (92.85 - 92.45)
        "4-bit: their drop minus ours, split into FP32 (theirs minus ours) and 4-bit (ours minus "
        "theirs): the paper -0.65 (FP32 -1.20, 4-bit +0.55); the authors' README +0.56 (FP32 "
        "+0.16, 4-bit +0.40); the rerun +0.39 (FP32 +0.10, 4-bit +0.29)"]
    # without a finished FP32 stage there is no drop; a flat last phase has no sd to count in
    (tmp_path / "b").mkdir()
    write_logs(tmp_path / "b", {32: [(90.0, 1)] * 3, 2: [(80.0, 1)] + [(90.0, 1)] * 3})
    assert gaps(find_runs(tmp_path / "b", "res20"), epochs=4, start=1).splitlines() == [
        "2-bit: best 90.00, last-phase mean 90.00 (sd 0.00): best - mean +0.00 (sd is 0)",
        "2-bit: best - reference: the paper 91.0 -1.00 (sd is 0), the authors' README 90.96 "
        "-0.96 (sd is 0), the rerun 91.02 -1.02 (sd is 0)"]


def test_phases_describe_each_run_of_one_lr(tmp_path):
    from tools.results_table import main
    head = "epoch,lr,train_loss,train_acc,test_loss,test_acc,best_acc,seconds\n"
    for bit, rows in ((32, ["0,0.1,1,50,1.5,60", "1,0.1,1,70,1.2,80", "2,0.1,1,60,1.3,70",
                            "3,0.01,1,90,0.9,85", "4,0.01,1,95,1.0,84"]),
                      (4, ["0,0.04,1,91,0.5,88"])):
        (tmp_path / f"res20_{bit}bit").mkdir()
        (tmp_path / f"res20_{bit}bit" / "log.csv").write_text(
            head + "".join(f"{r},0,1\n" for r in rows))
    proc = run_in_process(main, "--results", tmp_path, "--epochs", "5", "--phases", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        # halves of 3 epochs: 1 and 2 (60; 80 and 70)
        "FP32, epochs 0-2 (lr 0.1): test accuracy peak 80.00 (epoch 1), last 70.00, mean 60.00 "
        "over epochs 0-0 and 75.00 over 1-2; test loss min 1.200 (epoch 1), last 1.300; "
        "training accuracy mean 60.00, last 60.00",
        "FP32, epochs 3-4 (lr 0.01): test accuracy peak 85.00 (epoch 3), last 84.00, mean 85.00 "
        "over epochs 3-3 and 84.00 over 4-4; test loss min 0.900 (epoch 3), last 1.000; "
        "training accuracy mean 92.50, last 95.00",
        # a phase of one epoch has no halves; an unfinished stage is described too
        "4-bit, epochs 0-0 (lr 0.04): test accuracy peak 88.00 (epoch 0), last 88.00; test loss "
        "min 0.500 (epoch 0), last 0.500; training accuracy mean 91.00, last 91.00"]


def test_a_short_stage_ends_in_the_lr_phase_its_schedule_reaches(tmp_path):
    from CIFAR.main import LR_STEPS
    from tools.results_table import main
    from tools.runs import last_phase_start
    for epochs in (1, 2, 150, 151, 152, 200, 225, 226, 227, 300):
        # the first epoch trained at the lr the schedule ends with, from the scheduler itself
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=LR_STEPS, gamma=0.1)
        lrs = []
        for _ in range(epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert last_phase_start(epochs) == lrs.index(lrs[-1]), epochs
    # a 3-epoch smoke chain never reaches a milestone: its last phase is all 3 epochs
    write_logs(tmp_path, {32: [(90.0, 1), (91.0, 1), (92.0, 1)], 4: [(89.0, 1)]})
    proc = run_in_process(main, "--results", tmp_path, "--epochs", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| FP32 | 3/3 | 92.00 (2) | 92.00 | 91.00 (1.00) |" in proc.stdout
    assert ("FP32, epochs 0-2: test accuracy mean 91.00, sd 1.00, min 90.00, max 92.00"
            in proc.stdout)
    # one epoch has a mean but no sample sd
    write_logs(tmp_path / "one", {32: [(92.0, 1)], 4: [(89.0, 1)]})
    proc = run_in_process(main, "--results", tmp_path / "one", "--epochs", "1", "--gaps",
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2] == ("4-bit: best 89.00, last-phase mean 89.00 (sd nan): "
                                           "best - mean +0.00 (sd is nan)")


def test_results_table_needs_no_plotting_library():
    from helpers import run_script
    proc = run_script("-c", "import sys, tools.results_table; "
                            "sys.exit('matplotlib' in sys.modules)")
    assert proc.returncode == 0, proc.stderr


def test_block_markers_name_the_block_and_the_command_that_rewrites_it():
    from tools.docblock import markers
    assert markers("stage-table res56", "tools/stage_table.py --arch res56 --update") == (
        "<!-- stage-table res56: made by tools/stage_table.py --arch res56 --update -->",
        "<!-- /stage-table res56 -->")


def test_update_rewrites_only_the_marked_block(tmp_path):
    from tools.results_table import main, markers
    BEGIN, END = markers("res20")
    run = tmp_path / "res20_32bit"
    run.mkdir()
    (run / "log.csv").write_text("epoch,lr,train_loss,train_acc,test_loss,test_acc,best_acc,"
                                 "seconds\n0,0.1,1.0,50.0,1.0,42.5,42.5,9.0\n")
    lookalike = "| 3-bit | `main.py -a ARCH --bit 3` |\n| FP32 | 1/300 | 10.00 (0) |"
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{lookalike}\n{BEGIN}\nold table\n{END}\nafter\n{lookalike}\n")
    proc = run_in_process(main, "--results", tmp_path, "--update", readme, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    before, block, after = text.split(f"{BEGIN}\n")[0], *text.split(f"{BEGIN}\n")[1].split(END)
    assert before == f"# title\n{lookalike}\n" and after == f"\nafter\n{lookalike}\n"
    assert "| FP32 | 1/300 | 42.50 (0) | not finished |" in block and "old table" not in block
    readme.write_text("no markers\n")
    proc = run_in_process(main, "--results", tmp_path, "--update", readme, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*README\.md needs exactly one")
    assert readme.read_text() == "no markers\n"
    readme.write_text(f"{BEGIN}\nkept\n{END}\n")
    proc = run_in_process(main, "--results", tmp_path / "reslut", "--update", readme, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --results .*reslut is not a folder$")
    assert readme.read_text() == f"{BEGIN}\nkept\n{END}\n"


def test_each_architecture_has_its_references_block_and_recorded_set_up(tmp_path):
    from tools.results_table import main, markers
    write_logs(tmp_path, {32: [(93.0, 1)] * 3, 4: [(92.0, 1)]}, arch="res56")
    (tmp_path / "res56_32bit" / "args.json").write_text('{"bn_groups": 2, "channels_last": true}')
    (tmp_path / "res56_4bit" / "args.json").write_text(
        '{"bn_groups": 2, "channels_last": false, "alpha_floor": 0.001}')
    write_logs(tmp_path, {32: [(91.0, 1)] * 3}, arch="res20")  # no args.json: an early run
    readme = tmp_path / "README.md"
    blocks = [line for arch in ("res20", "res56") for line in (*markers(arch), "")]
    readme.write_text("\n".join(blocks))
    for arch in ("res56", "res20"):
        proc = run_in_process(main, "--results", tmp_path, "--arch", arch, "--epochs", "3",
                              "--update", readme, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    res20, res56 = readme.read_text().split(markers("res56")[0])
    # the paper's ResNet-56 FP32 and 4-bit (93.2, 94.0), its README's and the rerun's
    assert ("| FP32 | 3/3 | 93.00 (0) | 93.00 | 93.00 (0.00) |  |  | 1 | 93.2 | 94.46 | 93.94 |"
            in res56)
    assert "| 4-bit | 1/3 | 92.00 (0) | not finished |  |  |  | 1 | 94.0 (-0.8) | 93.93 | 93.85 |" \
        in res56
    assert ("Set-up (args.json): FP32 --bn-groups 2, channels_last; 4-bit --bn-groups 2, NCHW, "
            "--alpha-floor 0.001") in res56
    assert "| FP32 | 3/3 | 91.00 (0) |" in res20 and "| 91.6 | 92.96 | 92.90 |" in res20
    assert "Set-up of every stage (args.json): --bn-groups 1, channels_last" in res20
    proc = run_in_process(main, "--results", tmp_path, "--arch", "res110", cwd=tmp_path)
    assert_one_line_error(proc, r"^error: no reference numbers for --arch res110: the paper's "
                                r"CIFAR-10 table has res20 and res56$")


def test_stage_table_gives_each_epoch_the_cpu_the_chain_output_names(tmp_path):
    import json
    from tools.stage_table import main, markers
    write_logs(tmp_path, {32: [(90.0, 3600), (90.0, 7200), (90.0, 1800), (90.0, 5400)],
                          4: [(90.0, 100), (90.0, 300)]}, arch="res56")
    for bit, lr, wd in ((32, 0.1, 0.0005), (4, 0.04, 3e-05)):
        (tmp_path / f"res56_{bit}bit" / "args.json").write_text(
            json.dumps({"lr": lr, "weight_decay": wd}))
    (tmp_path / "res56_chain.out").write_text(
        "== chain started 2026-12-02 18:55:21 at 20f3431 on AMD EPYC\n"
        "== FP32 stage: starting in r/res56_32bit\n"
        "epoch 0: lr 0.1 ...\nepoch 1: lr 0.1 ...\nepoch 2: lr 0.1 ...\n"
        # a new clone resumed from epoch 2's committed checkpoint, on another CPU (with a flag
        # added, which is not part of the CPU): epoch 2 is the Xeon's, as its log.csv row is,
        # and so on; the 4-bit epoch 1 ran outside the chain
        "== chain resumed 2026-12-03 00:20:40 at c97811c on Intel Xeon with --alpha-floor 1e-3\n"
        "no GPU found: running on the CPU\nepoch 9: before any stage line, so nobody's\n"
        "== FP32 stage: continuing r/res56_32bit/checkpoint.pth.tar\n"
        "epoch 2: lr 0.1 ...\nepoch 3: lr 0.1 ...\n"
        "== chain resumed 2026-12-03 03:09:26 at 1e43e74 on AMD EPYC\n"
        "== FP32 stage: continuing r/res56_32bit/checkpoint.pth.tar\nepoch 3: lr 0.1 ...\n"
        "== 4-bit stage: starting in r/res56_4bit\nepoch 0: lr 0.04 ...\n")
    doc = tmp_path / "reproduction.md"
    begin, end = markers("res56")
    doc.write_text(f"before\n{begin}\nold\n{end}\nafter\n")
    proc = run_in_process(main, "--results", tmp_path, "--update", doc, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # medians: AMD 3600, 7200, 5400 -> 5400; Xeon 1800; the stage 4500; 18,000 s = 5 h
    assert doc.read_text() == (
        f"before\n{begin}\n"
        "| stage | lr, wd | epochs logged | CPU: epochs (median s/epoch) | median s/epoch | "
        "logged hours |\n|---|---|---|---|---|---|\n"
        "| FP32 | 0.1, 5e-4 | 4 | AMD EPYC: epochs 0-1, 3 (median 5400); Intel Xeon: epochs 2 "
        "(median 1800) | 4500 | 5.0 |\n"
        "| 4-bit | 0.04, 3e-5 | 2 | AMD EPYC: epochs 0 (median 100); not recorded: epochs 1 "
        f"(median 300) | 200 | 0.1 |\n{end}\nafter\n")
    proc = run_in_process(main, "--results", tmp_path / "reslut", "--update", doc, cwd=tmp_path)
    assert_one_line_error(proc, r"^error: --results .*reslut is not a folder$")
    assert "| FP32 | 0.1, 5e-4 | 4 |" in doc.read_text()


def test_a_log_longer_than_the_stage_is_refused(tmp_path):
    from tools.plot_curves import main as plot_main
    from tools.results_table import main, markers
    BEGIN, END = markers("res20")
    write_logs(tmp_path, {32: [(90.0, 1)] * 3, 4: [(89.0, 1)] * 5})
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\nkept\n{END}\n")
    for run, extra in ((main, ("--update", readme)), (plot_main, ())):
        proc = run_in_process(run, "--results", tmp_path, "--epochs", "4", *extra, cwd=tmp_path)
        assert_one_line_error(proc, r"^error: .*res20_4bit/log\.csv has 5 epochs, more than "
                                    r"--epochs 4$")
    assert readme.read_text() == f"{BEGIN}\nkept\n{END}\n"
    assert not (tmp_path / "res20_curves.png").exists()
    proc = run_in_process(main, "--results", tmp_path, "--epochs", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| 4-bit | 5/5 |" in proc.stdout


def test_plot_alphas_reads_ours_and_the_authors_and_marks_a_stage_in_training(tmp_path):
    import torch
    from tools.plot_alphas import main
    from CIFAR.resnet import ARCHS
    official = tmp_path / "official"
    official.mkdir()
    model = ARCHS["res20"](bit=4)
    with torch.no_grad():
        model.layer1[0].conv1.act_alpha.fill_(1.25)
        model.layer1[0].conv1.weight_quant.wgt_alpha.fill_(2.5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               official / "res20_4bit.pth.tar")  # the authors' DataParallel keys
    run = tmp_path / "res20_3bit"
    run.mkdir()
    ours = ARCHS["res20"](bit=3).state_dict()
    torch.save({"state_dict": ours, "epoch": 7}, run / "model_best.pth.tar")
    torch.save({"state_dict": ours, "epoch": 12}, run / "checkpoint.pth.tar")
    proc = run_in_process(main, "--results", tmp_path, "--official", official, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, first = proc.stdout.splitlines()[1:3]
    assert "authors' 4-bit" in header and "ours 3-bit (12 of 300 epochs)" in header
    # columns by bit-width: the authors' 4-bit, then our 3-bit (still at the initial alphas)
    assert first.split() == ["layer1.0.conv1", "1.250", "/", "2.500", "8.000", "/", "3.000"]
    assert png_size(tmp_path / "res20_alphas.png") == (1080, 780)  # 9 x 6.5 inches at 120 dpi


def test_plot_alphas_refuses_a_mistyped_folder_and_writes_no_figure(tmp_path):
    from tools.plot_alphas import main
    (tmp_path / "official").mkdir()
    for flag, path in (("--results", "reslut"), ("--official", "oficial")):
        folders = {"--results": tmp_path, "--official": tmp_path / "official", flag: path}
        proc = run_in_process(main, *[a for kv in folders.items() for a in kv], cwd=tmp_path)
        assert_one_line_error(proc, rf"^error: {flag} {path} is not a folder$")
    assert list(tmp_path.iterdir()) == [tmp_path / "official"]


def test_level_usage_counts_weights_on_each_level(tmp_path, tiny_cifar):
    """A conv whose weights are a quarter +1, a quarter -1 and half 0 normalises to +-s, 0 with
    s = 1 / sqrt(1152 / 2303) = 1.414; at alpha_w 2 the magnitude 0.707 rounds to the 2-bit level
    1, at alpha_w 3 (0.471) to 0."""
    import torch
    from tools.level_usage import main
    from CIFAR.resnet import ARCHS
    model = ARCHS["res20"](bit=2)
    with torch.no_grad():
        w = model.layer1[0].conv1.weight.view(-1)
        w.zero_()
        w[:576], w[576:1152] = 1.0, -1.0
        model.layer1[0].conv1.weight_quant.wgt_alpha.fill_(2.0)
        model.layer1[0].conv2.weight.copy_(model.layer1[0].conv1.weight)  # alpha_w stays 3
    torch.save({"state_dict": model.state_dict(), "bit": 2, "arch": "res20"}, tmp_path / "m.pth")
    proc = run_in_process(main, tmp_path / "m.pth", tmp_path / "m.pth", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("m.pth: 2-bit, share of weights (%) on the levels 0 1")
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert rows["layer1.0.conv1"] == ["2.000", "|", "50.0", "50.0"] * 2
    assert rows["layer1.0.conv2"] == ["3.000", "|", "100.0", "0.0"] * 2
    assert len(rows) == 20
    # stem channels 0-3 silenced (BatchNorm gamma 0, beta -1: ReLU gives 0), and layer1.0.conv1
    # weights 1 on those inputs, 0 on the others: mean 1/4, sd sqrt(432 / 2303) = 0.433, so
    # they normalise to 1.732 and -0.577, at alpha_w 2 magnitudes 0.866 (level 1) and 0.289
    # (level 0): 25% on level 1 counting every weight, none counting the live inputs alone
    with torch.no_grad():
        model.bn1.weight[:4], model.bn1.bias[:4] = 0.0, -1.0
        model.layer1[0].conv1.weight.zero_()
        model.layer1[0].conv1.weight[:, :4] = 1.0
    torch.save({"state_dict": model.state_dict(), "bit": 2, "arch": "res20"}, tmp_path / "s.pth")
    proc = run_in_process(main, tmp_path / "s.pth", cwd=tmp_path)
    assert proc.stdout.splitlines()[2].split() == ["layer1.0.conv1", "2.000", "|", "75.0", "25.0"]
    # twice: the second checkpoint sees the same test images as the first
    proc = run_in_process(main, tmp_path / "s.pth", tmp_path / "s.pth", "--data", tiny_cifar,
                          "--limit", 30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "share of weights of the input channels live on 30 test images" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert rows["layer1.0.conv1"] == ["2.000", "|", "100.0", "0.0", "|", "4/16"] * 2
    # conv1 reads only silent inputs through its nonzero weights: conv2's inputs are all silent
    assert rows["layer1.0.conv2"] == ["3.000", "|", "-", "-", "|", "16/16"] * 2
    assert len(rows) == 20
    assert rows["layer1.1.conv1"][5::6] == ["4/16"] * 2  # the identity shortcut carries the stem's


def summary_counts(top1, float_top1, agree, float64_top1, float64_agree):
    """export.py --summary's counts of a compare on 10,000 images (top-1 in hundredths)."""
    return {"images": 10000, "correct": top1, "float": {"correct": float_top1, "agree": agree},
            "float64": {"correct": float64_top1, "agree": float64_agree,
                        "agree_with_float": 9990}}


def test_export_tables_are_read_from_the_summaries_and_fill_only_their_blocks(tmp_path):
    import json
    from tools.export_tables import main, markers
    ints, onnx, docs = tmp_path / "int_res20", tmp_path / "onnx_res20", tmp_path / "docs"
    for folder in (ints, onnx, docs):
        folder.mkdir()
    models = {"ours_2bit": (100_000, (9010, 9000, 9990, 9005, 9995)),
              "authors_2bit": (137_223, (9098, 9098, 9997, 9097, 9996)),
              "authors_4bit": (208_263, (9242, 9247, 9992, 9241, 9998))}
    for name, (size, counts) in models.items():
        files = {"checkpoint": "c.pth.tar", "checkpoint_bytes": 2_000_000}
        (ints / f"{name}.json").write_text(json.dumps({
            "export": dict(files, file=f"x/{name}.apot", bytes=size),
            "infer": summary_counts(*counts)}))
        (onnx / f"{name}.json").write_text(json.dumps({
            "onnx": dict(files, file="/tmp/t.onnx", bytes=300_000),
            "ort": summary_counts(*counts)}))
        integer = summary_counts(7777, *counts[1:4], 9994)  # the ConvInteger graph's, beside it
        (onnx / f"{name}_integer.json").write_text(json.dumps({
            "onnx": dict(files, file="/tmp/t.onnx", bytes=310_000), "ort": integer}))
    (ints / "notes.json").write_text("{}")  # not a model's
    models_speed = {"1": [400.0, 200.0, 300.0, 1000.0, 90.0, 700.0],
                    "100": [1049.5, 210.0, 460.0, 2000.0, 570.0, 1500.0]}
    names = ["APoT ONNX, exact", "APoT ONNX, ConvInteger int8", "APoT ONNX, ConvInteger uint8",
             "FP32 ONNX", "PyTorch fake-quant", "bound: exact, no lookup"]
    (onnx / "bench_2bit.json").write_text(json.dumps({"bit": 2, "images_per_second": {
        b: dict(zip(names, rates)) for b, rates in models_speed.items()}}))
    lookalike = "| authors' 4-bit | 1 B | 0.00 | 0.00 | none |"
    for doc, name in (("export.md", "integer"), ("onnx.md", "onnx")):
        begin, end = markers(name, "res20")
        (docs / doc).write_text(f"# {doc}\n{lookalike}\n{begin}\nold\n{end}\n{lookalike}\n")
    speed_begin, speed_end = markers("onnx-speed")
    with open(docs / "onnx.md", "a") as f:
        f.write(f"{speed_begin}\nold\n{speed_end}\n")
    proc = run_in_process(main, "--logs", tmp_path, "--docs", docs, "--update", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    begin, end = markers("integer", "res20")
    assert (docs / "export.md").read_text() == "\n".join([
        "# export.md", lookalike, begin,
        "| checkpoint | file size (float checkpoint) | integer path top-1 | fake-quant top-1, "
        "float32 | fake-quant top-1, float64 | predictions agree with float32 | predictions "
        "agree with float64 |", "|---|---|---|---|---|---|---|",
        "| authors' 4-bit | 208,263 B (2,000,000 B: 9.6x) | 92.42 | 92.47 | 92.41 | 9,992 "
        "(99.92%) | 9,998 (99.98%) |",
        "| authors' 2-bit | 137,223 B (2,000,000 B: 14.6x) | 90.98 | 90.98 | 90.97 | 9,997 "
        "(99.97%) | 9,996 (99.96%) |",
        "| our 2-bit | 100,000 B (2,000,000 B: 20.0x) | 90.10 | 90.00 | 90.05 | 9,990 (99.90%) "
        "| 9,995 (99.95%) |", end, lookalike, ""])
    onnx_doc = (docs / "onnx.md").read_text().splitlines()
    assert onnx_doc[7] == "| our 2-bit | 300,000 B / 310,000 B (2,000,000 B) | 90.10 | 77.77 | " \
                          "90.00 | 90.05 | 9,990 (99.90%) | 9,995 (99.95%) | 9,994 (99.94%) |"
    assert onnx_doc[0] == "# onnx.md" and onnx_doc[9] == lookalike and len(onnx_doc) == 16
    assert onnx_doc[13:15] == [  # the exact graph at the largest batch in bold
        "| 2 | 1 | 400 (0.40x) | 200 (0.20x) | 300 (0.30x) | 1,000 (1x) | 90 (0.09x) | "
        "700 (0.70x) |",
        "| 2 | 100 | **1,050 (0.52x)** | 210 (0.10x) | 460 (0.23x) | 2,000 (1x) | 570 (0.28x) "
        "| 1,500 (0.75x) |"]
    # ResNet-56's integer checks ran (its ONNX ones not yet): its own block, after ResNet-20's
    (tmp_path / "int_res56").mkdir()
    (tmp_path / "int_res56" / "ours_4bit.json").write_text(json.dumps({
        "export": dict(files, file="x/ours_4bit.apot", bytes=500_000),
        "infer": summary_counts(9401, 9400, 9999, 9402, 9998)}))
    res20_doc = (docs / "export.md").read_text()
    proc = run_in_process(main, "--logs", tmp_path, "--docs", docs, "--update", cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*export\.md needs exactly one '<!-- integer-table "
                                r"res56: made by tools/export_tables\.py --update -->' line")
    begin56, end56 = markers("integer", "res56")
    with open(docs / "export.md", "a") as f:
        f.write(f"{begin56}\nold\n{end56}\n")
    proc = run_in_process(main, "--logs", tmp_path, "--docs", docs, "--update", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (docs / "export.md").read_text() == res20_doc + "\n".join([
        begin56, *res20_doc.splitlines()[3:5],
        "| our 4-bit | 500,000 B (2,000,000 B: 4.0x) | 94.01 | 94.00 | 94.02 | 9,999 (99.99%) "
        "| 9,998 (99.98%) |", end56, ""])
    # a summary without its run's entry: one error naming it, and neither doc rewritten
    before = {doc: (docs / doc).read_text() for doc in ("export.md", "onnx.md")}
    (onnx / "ours_2bit.json").write_text(json.dumps({"onnx": {"bytes": 1}}))
    proc = run_in_process(main, "--logs", tmp_path, "--docs", docs, "--update", cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*ours_2bit\.json has no ort entry")
    assert {doc: (docs / doc).read_text() for doc in before} == before


def test_the_docs_export_tables_are_the_committed_summaries():
    from tools.export_tables import TABLES, checked_archs, markers, speed_table, table
    made = {(name, arch): (t.doc, table(name, arch, ROOT / "result"))
            for name, t in TABLES.items() for arch in checked_archs(name, ROOT / "result")}
    made["onnx-speed", ""] = ("onnx.md", speed_table(ROOT / "result"))
    for (name, arch), (doc, text) in made.items():
        begin, end = markers(name, arch)
        block = (ROOT / "docs" / doc).read_text().split(begin + "\n")[1].split("\n" + end)[0]
        assert block == text


@pytest.mark.slow
def test_export_checks_list_the_authors_and_our_finished_stages_or_only_the_named(tmp_path):
    def bash(script, *args):
        return subprocess.run(["bash", script, *args], cwd=ROOT,
                              env=dict(os.environ, APOT_DATA=str(tmp_path)),
                              capture_output=True, text=True, timeout=120)

    def models(*names):
        return bash("tools/export_checks.sh", "models", *names)
    official = tmp_path / "apot-official-res20"
    every = models().stdout.splitlines()
    assert every[:3] == [f"authors_{b}bit {official}/res20_{b}bit.pth.tar {b}" for b in (4, 3, 2)]
    # our stages, all finished: their model_best is committed
    assert every[3:] == [f"ours_{b}bit result/reference/res20_{b}bit/model_best.pth.tar {b}"
                         for b in (4, 3, 2)]
    assert all((ROOT / line.split()[1]).is_file() for line in every[3:])
    named = models("authors_2bit", "authors_4bit")
    assert named.stdout.splitlines() == [every[2], every[0]] and named.returncode == 0
    for bad in ("ours_5bit", "authors_.*", "authors_2bit authors_3bit"):
        proc = models("authors_3bit", bad)
        assert_one_line_error(proc, rf"^error: no model named '{re.escape(bad)}' in the export")
        assert proc.stdout == ""
    # a bad name stops the export scripts before they run or rewrite anything
    for command in ("integer", "onnx"):
        proc = bash("tools/export_checks.sh", command, "ours_5bit")
        assert_one_line_error(proc, r"^error: no model named 'ours_5bit'")
    assert_one_line_error(bash("tools/export_checks.sh", "float"), r"^error: usage: ")
    # ResNet-56: no released checkpoints, and ours only once a quantized stage has finished
    finished = subprocess.run([sys.executable, "tools/results_table.py", "--arch", "res56",
                               "--finished"], cwd=ROOT, capture_output=True, text=True).stdout
    if finished.split() in ([], ["32"]):
        assert models("--arch", "res56").stdout == ""
        assert_one_line_error(bash("tools/export_checks.sh", "integer", "--arch", "res56"),
                              r"^error: no res56 model to export yet")
    assert_one_line_error(bash("tools/export_checks.sh", "onnx", "--arch", "res32"),
                          r"^error: --arch takes res20 or res56, got 'res32'")


def test_the_readme_layout_table_names_every_module():
    """A newcomer finds where a change goes from the README's layout table: every module and
    script of apot/, CIFAR/ and tools/ has a row, and ImageNet/'s row names each of its files."""
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout\n")[1].split("\n## ")[0]
    rows = layout.splitlines()
    for folder in ("apot", "CIFAR", "tools"):
        for path in sorted((ROOT / folder).iterdir()):
            if path.suffix in (".py", ".sh") and path.name != "__init__.py":
                assert f"`{folder}/{path.name}`" in layout, path
    (imagenet,) = [r for r in rows if r.startswith("| **`ImageNet/`**")]
    for path in sorted((ROOT / "ImageNet").iterdir()):
        if path.suffix in (".py", ".sh") and path.name != "__init__.py":
            assert f"`{path.name}`" in imagenet, path


def test_result_holds_data_only():
    """result/ holds runs and the logs and figures of our checks; the scripts that make them
    live in tools/ (or are named by commit in the check's README)."""
    scripts = [p.relative_to(ROOT) for p in (ROOT / "result").rglob("*")
               if p.suffix in (".py", ".sh")]
    assert scripts == []


def test_reference_numbers_come_from_the_method_docs_table(tmp_path):
    """docs/method.md's CIFAR-10 table is where the references are typed; the results table
    reads them from there (each row's cells as written), and a table missing a source is an
    error, not a blank column."""
    from tools.references import SOURCES, cifar10_references
    rows = [f"| {net} | {source} | {a}.{i}1 | {a}.{i}2 | {a}.{i}3 | {a}.{i}4 |"
            for a, net in ((20, "ResNet-20"), (56, "ResNet-56"))
            for i, source in enumerate(SOURCES)]
    doc = tmp_path / "method.md"
    doc.write_text("CIFAR-10:\n\n| model | source | FP32 | 4-bit | 3-bit | 2-bit |\n|---|---|\n"
                   + "\n".join(rows) + "\n| ResNet-18, paper | 1 | 2 | 3 | 4 |\n")
    refs = cifar10_references(doc)
    assert refs["res20"] == {32: ("20.01", "20.11", "20.21"), 4: ("20.02", "20.12", "20.22"),
                             3: ("20.03", "20.13", "20.23"), 2: ("20.04", "20.14", "20.24")}
    assert refs["res56"][2] == ("56.04", "56.14", "56.24")
    doc.write_text("\n".join(r for r in rows if "56 | paper" not in r))
    with pytest.raises(SystemExit, match="no ResNet-56 row for paper"):
        cifar10_references(doc)
    real = cifar10_references()  # the docs' own table has every cell, each a number
    assert all(float(v) > 0 for r in real.values() for bit in (32, 4, 3, 2) for v in r[bit])



def test_speed_tables_are_made_from_the_bench_summaries(tmp_path):
    import json
    from tools.speed_tables import (compile_step_table, layouts_ratio_table, main,
                                     ratios_table, variants_table)
    assert ratios_table({  # 250.4 / 200 and 0.5 s against 200 ms x 391 steps
        "arch": "res20", "batch": 128, "bit": 4, "step_ms": {"32": 200.0, "4": 250.4},
        "projection_ms": {"ours": 1.25, "brute_force": 250.0, "differ": 0},
        "batches_epoch_s": 0.5, "steps_per_epoch": 391}).splitlines()[2:] == [
        "| 4-bit / FP32 ResNet-20 training step (batch 128, built and compiled as `main.py` does) "
        "| **1.25x** (FP32 200 ms, 4-bit 250 ms) |",
        "| our projection vs the authors' brute-force \\|levels\\| x N search (128x16x32x32 "
        "tensor, 16 levels) | **200x** faster (1.25 ms vs 250 ms) |",
        "| making an epoch's batches (shuffle, crop, flip, normalise) vs an FP32 epoch's steps | "
        "**0.6%** |"]
    assert variants_table({
        "arch": "res56", "batch": 128, "bn_groups": 2, "layout_step_ms": {
            "32": {"NCHW": 1000.0, "channels_last": 800.4},
            "2": {"NCHW": 2000.0, "channels_last": 1500.0}}}, "layout_step_ms").splitlines() == [
        "| ResNet-56 training step, batch 128, `--bn-groups 2` | FP32 | 2-bit |", "|---|---|---|",
        "| NCHW | 1000 ms | 2000 ms |", "| channels_last | 800 ms | 1500 ms |",
        "| channels_last / NCHW | **0.80** | **0.75** |"]
    assert variants_table({  # the settings in the summary's order, the base one first
        "arch": "res20", "batch": 64, "bn_groups": 1, "compile_step_ms": {
            "4": {"eager": 900.0, "--compile-model": 990.0}}}, "compile_step_ms").splitlines() == [
        "| ResNet-20 training step, batch 64 | 4-bit |", "|---|---|", "| eager | 900 ms |",
        "| --compile-model | 990 ms |", "| --compile-model / eager | **1.10** |"]
    assert compile_step_table({"batch": 128, "step_ms": {
        "quantizers": {"32": 10.0, "4": 30.0}, "cudagraphs": {"32": 5.0, "4": 6.0}}}).splitlines()[
        -1] == "| `--compile-model` | 5.00 ms | 6.00 ms (**5.0x** faster) |"
    # one row per run, named by its flags and arithmetic; only the bit-widths every run timed
    assert layouts_ratio_table(
        {"arch": "res56", "batch": 128, "bn_groups": 2, "compile_model": False,
         "where": "NVIDIA H200, IEEE FP32", "layout_step_ms": {
             "32": {"NCHW": 20.0, "channels_last": 21.0},
             "4": {"NCHW": 40.0, "channels_last": 30.0}, "2": {"NCHW": 1.0, "channels_last": 1.0}}},
        {"arch": "res20", "batch": 128, "bn_groups": 1, "compile_model": True,
         "where": "NVIDIA H200, TF32", "layout_step_ms": {
             "32": {"NCHW": 4.0, "channels_last": 5.0},
             "4": {"NCHW": 8.0, "channels_last": 4.0}}}).splitlines() == [
        "| channels_last / NCHW, training step, batch 128 | FP32 | 4-bit |", "|---|---|---|",
        "| ResNet-56, `--bn-groups 2`, IEEE FP32 | **1.05** (20.0 -> 21.0 ms) | "
        "**0.75** (40.0 -> 30.0 ms) |",
        "| ResNet-20, `--compile-model`, TF32 (`--tf32`) | **1.25** (4.0 -> 5.0 ms) | "
        "**0.50** (8.0 -> 4.0 ms) |"]
    # every summary is read before anything is written: a missing one changes nothing
    (tmp_path / "cpu_speed").mkdir()
    (tmp_path / "cpu_speed" / "res20_bench.json").write_text(json.dumps({}))
    (tmp_path / "speed.md").write_text("kept\n")
    proc = run_in_process(main, "--results", tmp_path, "--docs", tmp_path, "--update",
                          cwd=tmp_path)
    assert_one_line_error(proc, r"^error: .*res56_layouts\.json is missing: run CIFAR/bench\.py")
    assert (tmp_path / "speed.md").read_text() == "kept\n"


def test_the_docs_speed_tables_are_the_committed_summaries():
    import json
    from tools.speed_tables import TABLES, markers
    text = (ROOT / "docs" / "speed.md").read_text()
    for name, (files, make) in TABLES.items():
        begin, end = markers(name)
        block = text.split(begin + "\n")[1].split("\n" + end)[0]
        assert block == make(*(json.loads((ROOT / "result" / f).read_text()) for f in files))


def test_faithfulness_table_is_made_from_the_summaries(tmp_path):
    import json
    from tools.faithfulness import MARKERS, main, table
    cpu = {"column": "ours, CPU", "results": {
        b: {"stored": s, "top1": t} for b, s, t in (("32", 92.96, 92.96), ("4", 92.47, 92.5),
                                                    ("3", 92.51, 92.5), ("2", 90.96, 90.949))}}
    gpu = {"column": "ours, GPU", "results": {b: {"top1": 90.0 + i} for i, b in
                                              enumerate(("32", "4", "3", "2"))}}
    assert table([cpu, gpu]).splitlines() == [
        "| checkpoint | stored by the authors | ours, CPU | ours, GPU |", "|---|---|---|---|",
        "| FP32 | 92.96 | 92.96 | 90.00 |", "| 4-bit | 92.47 | 92.50 | 91.00 |",
        "| 3-bit | 92.51 | 92.50 | 92.00 |", "| 2-bit | 90.96 | 90.95 | 93.00 |"]
    readme = (ROOT / "README.md").read_text()
    block = readme.split(MARKERS[0] + "\n")[1].split("\n" + MARKERS[1])[0]
    folder = ROOT / "result" / "faithfulness"
    assert block == table([json.loads((folder / n).read_text()) for n in ("cpu.json", "h200.json")])
    (tmp_path / "README.md").write_text(f"a\n{MARKERS[0]}\nold\n{MARKERS[1]}\nb\n")
    proc = run_in_process(main, "--update", tmp_path / "README.md", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "README.md").read_text() == f"a\n{MARKERS[0]}\n{block}\n{MARKERS[1]}\nb\n"


def test_replay_steps_retraces_the_epoch_the_run_trained_next(tmp_path, tiny_cifar):
    """Epoch 1 replayed from a run's epoch-1 checkpoint: its four step losses, averaged per
    image as main.py sums them (float64), give the train loss the run logged for epoch 1."""
    import shutil
    from apot.projection import compilation
    from CIFAR.main import main
    from tools.replay_steps import replay, run_args
    run = tmp_path / "run"

    def train(epochs, *extra):
        proc = run_in_process(main, "-a", "res20", "--bit", "4", "--lr", "0.04", "-b", "16",
                              "--epochs", epochs, "--data", tiny_cifar, "--no-progress",
                              "--save-dir", run, *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr

    train("1")
    shutil.copy(run / "checkpoint.pth.tar", tmp_path / "epoch1.pth.tar")
    train("2", "--resume", run / "checkpoint.pth.tar")
    logged = torch.load(run / "checkpoint.pth.tar", weights_only=True)["history"][1]
    lines = []
    with compilation(False):  # as run_in_process trains
        losses = replay(run_args(str(tmp_path / "epoch1.pth.tar"), str(tiny_cifar), None),
                        steps=100, show=1, say=lines.append)
    assert len(losses) == 4 and lines[0].startswith("epoch 1 of ")
    sizes = [16, 16, 16, 12]  # tiny_cifar's 60 training images in batches of 16
    assert round(sum(loss * n for loss, n in zip(losses, sizes)) / 60, 5) == logged["train_loss"]
    assert re.fullmatch(r"step 3 loss \d+\.\d{4} \| \S+alpha [-\d.e]+", lines[-1])
    with compilation(False):  # --alpha-floor 100 holds every alpha at 100 after the step
        replay(run_args(str(tmp_path / "epoch1.pth.tar"), str(tiny_cifar), 100.0),
               steps=1, show=1, say=lines.append)
    assert re.fullmatch(r"step 0 loss \S+ \| \S+alpha 100", lines[-1])
