"""Why does the 2-bit authors' checkpoint lose 0.26 on the GPU? Isolate each numeric part."""
import os
import sys
import time

import torch
import torch.nn.functional as F

from apot.training import RunContext, load_checkpoint, load_weights, set_float32_arithmetic
from CIFAR.data import Normalize, load_cifar
from CIFAR.main import build_model, evaluate, get_args_parser
from CIFAR.quant_layer import QuantConv2d

set_float32_arithmetic(False)
devs = sys.argv[1].split(",")
_, _, X, Y = load_cifar("scratch/cifar10", download=False, train=False)


def model_on(bit, dev):
    args = get_args_parser().parse_args(["-a", "res20", "--bit", str(bit)])
    m = build_model(args).to(dev)
    load_weights(m, load_checkpoint(f"scratch/official/res20_{bit}bit.pth.tar")["state_dict"], "x")
    return m.eval()


def acc(bit, dev, compiled, cudnn=True):
    os.environ["APOT_COMPILE"] = "1" if compiled else "0"
    torch.backends.cudnn.enabled = cudnn
    m = model_on(bit, dev)
    ctx = RunContext(rank=0, world=1, device=torch.device(dev), dp_ids=None, quiet=True)
    t = time.time()
    _, a = evaluate(m, torch.nn.CrossEntropyLoss(), (X.to(dev), Y.to(dev)), Normalize("cifar10", dev), ctx)
    torch.backends.cudnn.enabled = True
    print(f"bit {bit} {dev} compiled={compiled} cudnn={cudnn}: {a:.2f} ({time.time()-t:.0f}s)", flush=True)


@torch.no_grad()
def layerwise(bit, dev):
    """Same inputs on CPU and dev: quantized weights, quantized activations, conv outputs."""
    os.environ["APOT_COMPILE"] = "1"
    cpu, gpu = model_on(bit, "cpu"), model_on(bit, dev)
    inputs = {}
    hooks = [mod.register_forward_pre_hook(lambda mod, a, n=n: inputs.__setitem__(n, a[0]))
             for n, mod in cpu.named_modules() if isinstance(mod, QuantConv2d)]
    cpu(Normalize("cifar10", "cpu")(X[:200]))
    for h in hooks:
        h.remove()
    gmods = dict(gpu.named_modules())
    for n, mod in cpu.named_modules():
        if not isinstance(mod, QuantConv2d):
            continue
        g = gmods[n]
        wq_c, wq_g = mod.weight_quant(mod.weight), g.weight_quant(g.weight).cpu()
        aq_c, aq_g = mod.quantize_input(inputs[n]), g.quantize_input(inputs[n].to(dev)).cpu()
        out_c = F.conv2d(aq_c, wq_c, None, mod.stride, mod.padding)
        out_g = F.conv2d(aq_c.to(dev), wq_c.to(dev), None, mod.stride, mod.padding).cpu()
        rel = ((out_c - out_g).abs().max() / out_c.abs().max()).item()
        print(f"{n}: weight codes differ {(wq_c != wq_g).sum().item()}/{wq_c.numel()}, "
              f"act codes differ {(aq_c != aq_g).sum().item()}/{aq_c.numel()}, "
              f"conv max rel err {rel:.1e}", flush=True)


for bit in (2, 3):
    for dev in devs:
        for compiled in (True, False):
            acc(bit, dev, compiled)
        if dev == "cuda":
            acc(bit, dev, True, cudnn=False)
for dev in devs:
    if dev != "cpu":
        layerwise(2, dev)
