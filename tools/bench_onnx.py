"""Inference speed of a quantized ResNet under ONNX Runtime, every form of its ONNX file beside
the float twin (the same network with plain FP32 convs) and PyTorch's fake-quant model, at
batch 1 and 100, measured in one run on the CPU.

    python tools/bench_onnx.py [--arch res20] [--bit 4] [--seconds 5] [--batches 1 100] [--profile]
                               [--summary FILE.json]

The forms: exact float convs on integers (the default export), ConvInteger with int8 and with
uint8 weights. One more row is not a model: the exact graph with its level lookup cut out (each
conv reads the clipped index instead of the level integer; wrong outputs, the same work
otherwise), the speed a lookup fused into the conv's input would allow. --profile adds the time
per ONNX op type of the exact graph, with and without the lookup, at the largest batch.

Weights do not change the speed: the models are freshly initialised (BatchNorm statistics as
initialised). Each configuration runs for about --seconds after a warm-up (which includes the
quantizers' torch.compile); the figure is the median over five slices of that time. --summary
writes the printed numbers as JSON (the speed table of docs/onnx.md is made from these files by
tools/export_tables.py).
"""
import argparse
import collections
import json
import os
import platform
import statistics
import tempfile
import time

import torch

from apot.checkpoint import write_json
from apot.levels import SUPPORTED_BITS
from apot.onnx_export import to_onnx
from apot.runfolder import stage_name
from CIFAR.quant_layer import QuantConv2d
from CIFAR.resnet import ARCHS


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "CPU"


def images_per_second(run, batch, seconds):
    """Median over five slices of `seconds` / 5 each, after one slice of warm-up."""
    rates = []
    for i in range(6):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            run()
            n += batch
        if i:
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def op_profile(proto, x, runs=3):
    """Milliseconds per run spent in each ONNX op type (ONNX Runtime's own profiler)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(proto.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {"input": x})
        with open(session.end_profiling()) as f:
            events = json.load(f)
    total = collections.Counter()
    for e in events:
        if e.get("cat") == "Node":
            total[e["args"]["op_name"]] += e["dur"] / 1000 / runs
    return total


def without_lookup(proto):
    """The graph with every quantized conv reading its clipped index, not the level integer
    looked up from it, and the nodes no longer used removed: a timing bound, not a model."""
    import onnx
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    nodes = proto.graph.node
    for node in nodes:
        if node.input and node.input[0].endswith(".act_int"):
            node.input[0] = node.input[0][:-len(".act_int")] + ".clip"
    needed = {o.name for o in proto.graph.output}
    keep = []
    for node in reversed(nodes):
        if needed & set(node.output):
            keep.append(node)
            needed |= set(node.input)
    del nodes[:]
    nodes.extend(reversed(keep))
    used = [i for i in proto.graph.initializer if i.name in needed]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(used)
    return proto


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="res20", choices=sorted(ARCHS))
    p.add_argument("--bit", default=4, type=int, choices=SUPPORTED_BITS)
    p.add_argument("--seconds", default=5.0, type=float, help="timed seconds per configuration")
    p.add_argument("--batches", default=[1, 100], type=int, nargs="+", help="batch sizes")
    p.add_argument("--profile", action="store_true",
                   help="also the time per ONNX op type of the exact graph, with and without its "
                        "lookup, at the largest batch")
    p.add_argument("--summary", default="", metavar="JSON",
                   help="also write the numbers printed into this JSON file")
    args = p.parse_args(argv)
    import onnxruntime as ort

    torch.manual_seed(0)
    model = ARCHS[args.arch](bit=args.bit).eval()
    exact = to_onnx(model, QuantConv2d, 32)
    protos = {"APoT ONNX, exact": exact,
              "APoT ONNX, ConvInteger int8": to_onnx(model, QuantConv2d, 32, convs="integer"),
              "APoT ONNX, ConvInteger uint8": to_onnx(model, QuantConv2d, 32, convs="integer",
                                                      unsigned_weights=True),
              "FP32 ONNX": to_onnx(model, QuantConv2d, 32, convs="fp32"),
              "bound: exact, no lookup": without_lookup(exact)}
    sessions = {name: ort.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
                for name, proto in protos.items()}
    summary = dict(arch=args.arch, bit=args.bit, cpu=cpu_name(), threads=torch.get_num_threads(),
                   torch=torch.__version__, onnxruntime=ort.__version__, images_per_second={},
                   profile_ms={})
    print(f"{args.arch}, {stage_name(args.bit)}, 32x32 images, {summary['cpu']}, "
          f"{summary['threads']} threads, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}")
    print(f"{'batch':>5s} {'model':30s} {'images/s':>10s} {'vs FP32 ONNX':>13s}")
    for batch in args.batches:
        x = torch.randn(batch, 3, 32, 32)
        runs = {name: (lambda s=s: s.run(None, {"input": x.numpy()}))
                for name, s in sessions.items()}

        def fake_quant():
            with torch.no_grad():
                model(x)

        runs["PyTorch fake-quant"] = fake_quant
        runs["bound: exact, no lookup"] = runs.pop("bound: exact, no lookup")  # the last row
        rates = {name: images_per_second(run, batch, args.seconds) for name, run in runs.items()}
        summary["images_per_second"][str(batch)] = rates
        for name, rate in rates.items():
            print(f"{batch:5d} {name:30s} {rate:10.1f} {rate / rates['FP32 ONNX']:12.2f}x")
    if args.profile:
        batch = max(args.batches)
        for name in ("APoT ONNX, exact", "bound: exact, no lookup"):
            ms = op_profile(protos[name], torch.randn(batch, 3, 32, 32).numpy())
            summary["profile_ms"][name] = {"batch": batch, "ops": dict(ms.most_common())}
            print(f"{name}, batch {batch}, ms per run by op type: " + ", ".join(
                f"{op} {t:.1f}" for op, t in ms.most_common()))
    if args.summary:
        write_json(args.summary, summary)


if __name__ == "__main__":
    main()
