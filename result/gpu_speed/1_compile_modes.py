"""Does compiling the whole model make GPU training steps faster? (an experiment, not a tool)

    python result/gpu_speed/1_compile_modes.py [--bits 4 32] [--modes quantizers model cudagraphs]

Modes: `eager` (no compilation), `quantizers` (main.py's default: the quantizers' elementwise
work compiled, the rest eager), `model` (torch.compile of the whole model, quantizers traced
into it), `cudagraphs` (the same with mode="reduce-overhead": CUDA graphs). Every mode starts
from the same weights and sees the same batches, stepped as main.py steps (train_step, then
loss.item() and the accuracy count), so its loss after N steps shows whether it computes the
same thing; the timed steps give the median step time. Then one 80-image step (an epoch's last
batch) and an eval pass of 100-image batches, each timed with its compilation.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import apot.projection  # noqa: E402
from apot.training import set_float32_arithmetic  # noqa: E402
from CIFAR.main import build_model, get_args_parser, make_optimizer, train_step  # noqa: E402


def batches(n, size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g).to(device)
             .contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (size,), generator=g).to(device)) for _ in range(n)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(net, crit, opt, images, target):
    output, loss = train_step(net, crit, opt, images, target)
    return loss.item(), (output.argmax(1) == target).sum().item()


def run_mode(bit, mode, data, steps, device):
    apot.projection.compile_enabled = lambda: mode == "quantizers"
    torch._dynamo.reset()
    args = get_args_parser().parse_args(["--bit", str(bit)])
    torch.manual_seed(0)
    model = build_model(args).to(device)
    opt = make_optimizer(model, args)
    crit = torch.nn.CrossEntropyLoss()
    net = {"eager": model, "quantizers": model, "model": torch.compile(model),
           "cudagraphs": torch.compile(model, mode="reduce-overhead")}[mode]
    net.train()
    t = time.perf_counter()
    losses = [step(net, crit, opt, *data[0])[0]]
    first = time.perf_counter() - t
    times = []
    for images, target in data[1:steps + 1]:
        sync(device)
        t = time.perf_counter()
        losses.append(step(net, crit, opt, images, target)[0])
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    step(net, crit, opt, *batches(1, 80, device, seed=1)[0])
    last = time.perf_counter() - t
    net.eval()
    evals = []
    with torch.no_grad():
        for images, _ in batches(4, 100, device, seed=2):
            sync(device)
            t = time.perf_counter()
            net(images).argmax(1).sum().item()
            evals.append(time.perf_counter() - t)
    return dict(first=first, step=statistics.median(times), last=last, eval_first=evals[0],
                eval=statistics.median(evals[1:]), losses=losses)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bits", nargs="+", type=int, default=[4, 32])
    p.add_argument("--modes", nargs="+", default=["quantizers", "model", "cudagraphs"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    set_float32_arithmetic(False)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, IEEE FP32, res20, batch 128", flush=True)
    data = batches(a.steps + 1, 128, device)
    for bit in a.bits:
        ref = None
        for mode in a.modes:
            try:
                r = run_mode(bit, mode, data, a.steps, device)
            except Exception as e:  # an experiment: report the failure and go on
                print(f"bit {bit} {mode}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            ref = ref or r["losses"]
            drift = max(abs(x - y) for x, y in zip(r["losses"], ref))
            print(f"bit {bit:2d} {mode:10s}: step {r['step'] * 1e3:6.2f} ms (median of "
                  f"{a.steps}), first step {r['first']:5.1f} s, 80-image step {r['last']:5.1f} s, "
                  f"eval batch {r['eval'] * 1e3:5.2f} ms (first {r['eval_first']:4.1f} s); "
                  f"loss after {a.steps} steps {r['losses'][-1]:.5f}, max |diff| from "
                  f"{a.modes[0]} {drift:.1e}", flush=True)


if __name__ == "__main__":
    main()
