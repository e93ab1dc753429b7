"""The tables of docs/speed.md, made from CIFAR/bench.py's JSON summaries (--summary) under
result/: on the CPU (cpu_speed/) the training-step, projection and batch-making ratios of one
run, and the ResNet-56 steps in both memory formats and with and without --compile-model; on an
H200 (gpu_check/, gpu_speed/) steps and epochs, with --tf32 and with --compile-model, and the
steps in both memory formats. The GPU summaries before gpu_speed/4_* were converted from the logs
of those runs, which predate --summary (each names its log); tools/gpu_check.sh writes new ones.

    python tools/speed_tables.py [--results result] [--docs docs]
    python tools/speed_tables.py --update    # rewrites only docs/speed.md's marked blocks
"""
import argparse
import json
from pathlib import Path

from apot.runfolder import stage_name
from tools.docblock import markers as block_markers, update_block

ROOT = Path(__file__).resolve().parents[1]


def markers(name):
    return block_markers(f"speed-table {name}", "tools/speed_tables.py --update")


def network(arch):
    return f"ResNet-{arch.removeprefix('res')}"


def ratios_table(s):
    bit, p = s["bit"], s["projection_ms"]
    fp32, quant = s["step_ms"]["32"], s["step_ms"][str(bit)]
    share = 100 * s["batches_epoch_s"] / (fp32 / 1e3 * s["steps_per_epoch"])
    return "\n".join([
        "| what | measured |", "|---|---|",
        f"| {bit}-bit / FP32 {network(s['arch'])} training step (batch {s['batch']}, built and "
        f"compiled as `main.py` does) | **{quant / fp32:.2f}x** (FP32 {fp32:.0f} ms, {bit}-bit "
        f"{quant:.0f} ms) |",
        "| our projection vs the authors' brute-force \\|levels\\| x N search (128x16x32x32 "
        f"tensor, {2**bit} levels) | **{p['brute_force'] / p['ours']:.0f}x** faster "
        f"({p['ours']:.2f} ms vs {p['brute_force']:.0f} ms) |",
        "| making an epoch's batches (shuffle, crop, flip, normalise) vs an FP32 epoch's steps | "
        f"**{share:.1f}%** |"])


def variants_table(s, key):
    """bench.py --layouts or --compiled: each model's step in the two settings (the summary's
    order, base first) and their ratio."""
    steps = s[key]
    groups = f", `--bn-groups {s['bn_groups']}`" if s["bn_groups"] > 1 else ""
    head = f"| {network(s['arch'])} training step, batch {s['batch']}{groups} | " + " | ".join(
        stage_name(int(b)) for b in steps) + " |"
    base, other = next(iter(steps.values()))
    rows = [f"| {name} | " + " | ".join(f"{ms[name]:.0f} ms" for ms in steps.values()) + " |"
            for name in (base, other)]
    ratio = f"| {other} / {base} | " + " | ".join(
        f"**{ms[other] / ms[base]:.2f}**" for ms in steps.values()) + " |"
    return "\n".join([head, "|---" * (len(steps) + 1) + "|", *rows, ratio])


def gpu_table(default, tf32):
    """Steps and epochs of one bench run, and the epochs of one with --tf32."""
    ms, epochs, fast = default["step_ms"], default["epochs"], tf32["epochs"]
    return "\n".join([
        "| what | FP32 | 4-bit | 4-bit / FP32 |", "|---|---|---|---|",
        f"| training step, batch {default['batch']} (median of {default['steps']}) | "
        f"{ms['32']:.0f} ms | {ms['4']:.0f} ms | {default['step_ratio']:.2f}x |",
        "| whole epoch (391 steps + test pass, batches made on the GPU) | "
        f"{epochs['32']['median']:.2f} s | {epochs['4']['median']:.2f} s | "
        f"{default['epoch_ratio']:.2f}x |",
        f"| a 300-epoch stage, projected | ~{epochs['32']['stage_minutes']:.1f} min | "
        f"~{epochs['4']['stage_minutes']:.1f} min | |",
        f"| the same with `--tf32` (epoch) | {fast['32']['median']:.2f} s | "
        f"{fast['4']['median']:.2f} s | {tf32['epoch_ratio']:.2f}x |"])


def compile_step_table(modes):
    """main.py's step with the compiled quantizers against the whole model as CUDA graphs."""
    q, c = modes["step_ms"]["quantizers"], modes["step_ms"]["cudagraphs"]
    return "\n".join([
        f"| training step, batch {modes['batch']} | FP32 | 4-bit |", "|---|---|---|",
        f"| default (compiled quantizers) | {q['32']:.2f} ms | {q['4']:.2f} ms |",
        f"| `--compile-model` | {c['32']:.2f} ms | {c['4']:.2f} ms (**{q['4'] / c['4']:.1f}x** "
        "faster) |"])


def compile_epoch_table(default, compiled):
    """Whole epochs of a bench run without and with --compile-model."""
    rows = [f"| {name} | {s['epochs']['32']['median']:.2f} s | {s['epochs']['4']['median']:.2f} s "
            f"| {s['epoch_ratio']:.2f}x |"
            for name, s in (("default (compiled quantizers)", default),
                            ("`--compile-model`", compiled))]
    stage = compiled["epochs"]
    return "\n".join([
        "| whole epoch (391 steps + test pass), median of epochs 2-3 | FP32 | 4-bit | "
        "4-bit / FP32 |", "|---|---|---|---|", *rows,
        f"| a 300-epoch stage with `--compile-model`, projected | "
        f"~{stage['32']['stage_minutes']:.1f} min | ~{stage['4']['stage_minutes']:.1f} min | |"])


def setting(s):
    """A bench summary's model and arithmetic, as main.py's flags."""
    flags = [f"`--bn-groups {s['bn_groups']}`"] * (s["bn_groups"] > 1) + [
        "`--compile-model`"] * s["compile_model"]
    arithmetic = "TF32 (`--tf32`)" if s["where"].endswith("TF32") else "IEEE FP32"
    return ", ".join([network(s["arch"]), *flags, arithmetic])


def layouts_ratio_table(*summaries):
    """bench.py --layouts runs, one row each: channels_last / NCHW per model, with both steps."""
    bits = [b for b in summaries[0]["layout_step_ms"]
            if all(b in s["layout_step_ms"] for s in summaries)]
    rows = [f"| {setting(s)} | " + " | ".join(
        f"**{ms['channels_last'] / ms['NCHW']:.2f}** ({ms['NCHW']:.1f} -> "
        f"{ms['channels_last']:.1f} ms)" for ms in (s["layout_step_ms"][b] for b in bits)) + " |"
        for s in summaries]
    return "\n".join([
        f"| channels_last / NCHW, training step, batch {summaries[0]['batch']} | "
        + " | ".join(stage_name(int(b)) for b in bits) + " |",
        "|---" * (len(bits) + 1) + "|", *rows])


# table -> (its summaries under --results, the function that makes it from them)
TABLES = {"cpu": (["cpu_speed/res20_bench.json"], ratios_table),
          "layouts": (["cpu_speed/res56_layouts.json"],
                      lambda s: variants_table(s, "layout_step_ms")),
          "cpu-compile": (["cpu_speed/res56_compile.json"],
                          lambda s: variants_table(s, "compile_step_ms")),
          "gpu": (["gpu_check/3_h200_bench.json", "gpu_check/3_h200_bench_tf32.json"],
                  gpu_table),
          "gpu-compile-step": (["gpu_speed/1_h200.json"], compile_step_table),
          "gpu-compile-epochs": (["gpu_speed/3b_h200.json", "gpu_speed/3_h200_compile_model.json"],
                                 compile_epoch_table),
          "gpu-compile-res56": (["gpu_speed/6_h200_res56_compile.json"],
                                lambda s: variants_table(s, "compile_step_ms")),
          "gpu-layouts": (["gpu_speed/4_h200_res56_layouts.json",
                           "gpu_speed/4_h200_res20_layouts.json",
                           "gpu_speed/5_h200_res20_layouts_compile_model.json",
                           "gpu_speed/5_h200_res56_layouts_tf32.json"], layouts_ratio_table)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=ROOT / "result", type=Path,
                   help="folder holding the summaries' folders")
    p.add_argument("--docs", default=ROOT / "docs", type=Path, help="folder holding speed.md")
    p.add_argument("--update", action="store_true",
                   help="write each table into docs/speed.md's marked block instead of printing")
    args = p.parse_args(argv)
    missing = [args.results / f for files, _ in TABLES.values() for f in files
               if not (args.results / f).is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} is missing: run CIFAR/bench.py --summary FILE")
    tables = {name: make(*(json.loads((args.results / f).read_text()) for f in files))
              for name, (files, make) in TABLES.items()}  # all made before anything is written
    for name, text in tables.items():
        if args.update:
            update_block(args.docs / "speed.md", text, *markers(name))
            print(f"updated the {name} table of {args.docs / 'speed.md'}")
        else:
            print(f"{text}\n")


if __name__ == "__main__":
    main()
