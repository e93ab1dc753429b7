"""Where the ONNX model and the float fake-quant model disagree, which one is off? Runs one
checkpoint's fake-quant model in float32 and in float64, and its ONNX export under ONNX Runtime,
on the whole CIFAR-10 test set, and prints top-1 and the pairwise prediction agreement.

    python result/onnx_res20/precision_check.py CKPT --bit B [--data $APOT_DATA/cifar10]
"""
import argparse
import os

import numpy as np
import onnxruntime as ort
import torch

from apot.export import load_quantized_model
from apot.onnx_export import to_onnx
from apot.training import data_root
from CIFAR.data import Normalize, load_cifar
from CIFAR.export import VARIANT
from CIFAR.quant_layer import QuantConv2d


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--bit", type=int, required=True)
    p.add_argument("--data", default=os.path.join(data_root(), "cifar10"))
    args = p.parse_args()
    model, _ = load_quantized_model(args.checkpoint, VARIANT, "res20", args.bit, "apot")
    session = ort.InferenceSession(to_onnx(model, QuantConv2d, 32).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    _, _, x, y = load_cifar(args.data, "cifar10", download=False, train=False)
    x = Normalize("cifar10", "cpu")(x)
    preds = {"float32": [], "float64": [], "ONNX": []}
    model64 = load_quantized_model(args.checkpoint, VARIANT, "res20", args.bit, "apot")[0].double()
    with torch.no_grad():
        for s in range(0, len(x), 500):
            xb = x[s:s + 500].contiguous()
            preds["float32"].append(model(xb).argmax(1).numpy())
            preds["float64"].append(model64(xb.double()).argmax(1).numpy())
            preds["ONNX"].append(session.run(None, {"input": xb.numpy()})[0].argmax(1))
    preds = {k: np.concatenate(v) for k, v in preds.items()}
    for k, v in preds.items():
        print(f"{k:8s} top-1 {100 * (v == y.numpy()).mean():.2f}")
    names = list(preds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"{a} vs {b}: predictions differ on {(preds[a] != preds[b]).sum()} of {len(y)}")


if __name__ == "__main__":
    main()
