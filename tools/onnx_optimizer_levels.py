"""What ONNX Runtime's graph optimizations change in an exported model. Runs one checkpoint's ONNX
graph (both exact forms) at each optimization level, and with single optimizers switched off, on
the first --images CIFAR-10 test images; prints, against the same graph with every optimization
off, the largest logit difference, how many images' logits differ at all and how many
predictions differ.

    python tools/onnx_optimizer_levels.py CKPT --bit B [--images 1000] [--data DIR]

(the log of the authors' 4-bit model: result/onnx_res20/optimizer_levels_authors_4bit.txt, made
when this script was result/onnx_res20/optimizer_levels.py)
"""
import argparse
import os

import numpy as np
import onnxruntime as ort

from apot.cli import data_root
from apot.export import load_quantized_model
from apot.onnx_export import to_onnx
from CIFAR.data import Normalize, load_cifar
from CIFAR.export import VARIANT
from CIFAR.quant_layer import QuantConv2d

LEVEL = ort.GraphOptimizationLevel
RUNS = [("basic", LEVEL.ORT_ENABLE_BASIC, []), ("extended", LEVEL.ORT_ENABLE_EXTENDED, []),
        ("all (the default)", LEVEL.ORT_ENABLE_ALL, []),
        ("all but ConvBNFusion", LEVEL.ORT_ENABLE_ALL, ["ConvBNFusion"]),
        ("all but NchwcTransformer", LEVEL.ORT_ENABLE_ALL, ["NchwcTransformer"])]


def logits(proto, x, level, disabled=()):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"],
                                   disabled_optimizers=list(disabled))
    return session.run(None, {"input": x})[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--bit", type=int, required=True)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--data", default=os.path.join(data_root(), "cifar10"))
    args = p.parse_args()
    model, _ = load_quantized_model(args.checkpoint, VARIANT, "res20", args.bit, "apot")
    _, _, x, _ = load_cifar(args.data, "cifar10", download=False, train=False)
    x = Normalize("cifar10", "cpu")(x[:args.images]).contiguous().numpy()
    print(f"{args.checkpoint}, {args.bit}-bit, first {len(x)} test images, onnxruntime "
          f"{ort.__version__}; against the same graph with every optimization off:")
    for convs in ("exact", "integer"):
        proto = to_onnx(model, QuantConv2d, 32, convs=convs)
        off = logits(proto, x, LEVEL.ORT_DISABLE_ALL)
        for name, level, disabled in RUNS:
            y = logits(proto, x, level, disabled)
            diff = np.abs(y - off).max(1)
            print(f"{convs:8s} {name:26s} max |logit diff| {diff.max():.6f}, logits differ on "
                  f"{(diff > 0).sum()}, predictions on {(y.argmax(1) != off.argmax(1)).sum()}")


if __name__ == "__main__":
    main()
