"""Where the ONNX model and the float fake-quant model disagree, which one is off? Runs one
checkpoint's fake-quant model in float32, its float64 twin (the weights float32 quantizes, the
rest in float64: apot.compare.float64_twin), the model with every weight quantized again in
float64 too, and its ONNX export under ONNX Runtime, on the whole CIFAR-10 test set; prints
top-1, the pairwise prediction agreement and how many weight codes float64 quantizes otherwise.

    python tools/onnx_precision.py CKPT --bit B [--data $APOT_DATA/cifar10]

(logs: result/onnx_res20/precision_<model>.txt, made when this script was
result/onnx_res20/precision_check.py)
"""
import argparse
import copy
import os

import numpy as np
import onnxruntime as ort
import torch

from apot.cli import data_root
from apot.compare import float64_twin
from apot.export import load_quantized_model
from apot.intmath import integer_terms
from apot.onnx_export import to_onnx
from CIFAR.data import Normalize, load_cifar
from CIFAR.export import VARIANT
from CIFAR.quant_layer import QuantConv2d


def signed_index(conv):
    t = integer_terms(conv)
    return torch.where(t["negative"], -t["index"], t["index"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--bit", type=int, required=True)
    p.add_argument("--data", default=os.path.join(data_root(), "cifar10"))
    args = p.parse_args()
    model, _ = load_quantized_model(args.checkpoint, VARIANT, "res20", args.bit, "apot")
    requantized = copy.deepcopy(model).double()
    convs = [(a, b) for a, b in zip(model.modules(), requantized.modules())
             if isinstance(a, QuantConv2d)]
    moved = sum((signed_index(a) != signed_index(b)).sum().item() for a, b in convs)
    print(f"weight codes float64 quantizes otherwise: {moved} of "
          f"{sum(a.weight.numel() for a, _ in convs)}")
    models = {"float32": (model, torch.float32),
              "float64 twin": (float64_twin(model), torch.float64),
              "float64 requantized": (requantized, torch.float64)}
    session = ort.InferenceSession(to_onnx(model, QuantConv2d, 32).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    _, _, x, y = load_cifar(args.data, "cifar10", download=False, train=False)
    x = Normalize("cifar10", "cpu")(x)
    preds = {name: [] for name in [*models, "ONNX"]}
    with torch.no_grad():
        for s in range(0, len(x), 500):
            xb = x[s:s + 500].contiguous()
            for name, (m, dtype) in models.items():
                preds[name].append(m(xb.to(dtype)).argmax(1).numpy())
            preds["ONNX"].append(session.run(None, {"input": xb.numpy()})[0].argmax(1))
    preds = {k: np.concatenate(v) for k, v in preds.items()}
    for k, v in preds.items():
        print(f"{k:20s} top-1 {100 * (v == y.numpy()).mean():.2f}")
    names = list(preds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"{a} vs {b}: predictions differ on {(preds[a] != preds[b]).sum()} of {len(y)}")


if __name__ == "__main__":
    main()
