"""Does folding the first conv's BatchNorm at export (in float64) bring ONNX Runtime closer to the
float64 twin than leaving it to ONNX Runtime (in float32)? For each model of res20_models.sh,
on the whole CIFAR-10 test set at ONNX Runtime's default optimizations: top-1 of the twin, and
of the exact graph with the fold and without it (the BatchNorm a node, as exports were before),
with how many predictions differ from the twin's. The ConvInteger graph gives the same
predictions as the exact one (docs/onnx.md's table), so the second column is also what the
ConvInteger export without the fold gives on this machine.

    python result/onnx_res20/fold_check.py [--data DIR]
"""
import argparse
import os
import subprocess

import numpy as np
import onnxruntime as ort
import torch

from apot.export import float64_twin, load_quantized_model
from apot.training import data_root
from CIFAR.data import Normalize, load_cifar
from CIFAR.export import VARIANT
from optimizer_levels import export


def predictions(predict, x):
    return np.concatenate([predict(x[s:s + 500]) for s in range(0, len(x), 500)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join(data_root(), "cifar10"))
    args = p.parse_args()
    _, _, x, y = load_cifar(args.data, "cifar10", download=False, train=False)
    x, y = Normalize("cifar10", "cpu")(x).contiguous(), y.numpy()
    models = subprocess.run(["bash", "result/res20_models.sh"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    print(f"onnxruntime {ort.__version__}, {len(y)} test images; top-1, and predictions that "
          "differ from the float64 twin's")
    for name, ckpt, bit in (line.split() for line in models if line):
        model, _ = load_quantized_model(ckpt, VARIANT, "res20", int(bit), "apot")
        twin = float64_twin(model)
        with torch.no_grad():
            ref = predictions(lambda xb: twin(xb.double()).argmax(1).numpy(), x)
        row = [f"{name:12s} twin {100 * (ref == y).mean():.2f}"]
        for fold in (True, False):
            session = ort.InferenceSession(export(model, "exact", fold).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            got = predictions(lambda xb: session.run(None, {"input": xb.numpy()})[0].argmax(1), x)
            row.append(f"{'folded' if fold else 'not folded'} {100 * (got == y).mean():.2f} "
                       f"({(got != ref).sum()} differ)")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
